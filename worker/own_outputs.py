"""What a command writes is not what it reads: its outputs are left out of the folders named as inputs.

``analyze photos --summary photos/people.json``, run twice: the second run found the first run's
face pictures and timelines in ``photos`` and analysed them as photos (faces of faces, counted as
people); ``--report photos/page.html`` its annotated clips (boxes on boxes, twice the time);
``--annotate photos/ann`` its annotated copies. :func:`expand_inputs` expands the input paths as
:func:`shared.media.expand_paths` does, without these files.

A name is no proof: a user's own photo named ``people-street-t0.jpg`` beside ``people.json`` was left out
and then written over by street.jpg's face picture. A file beside an output is the command's own only
where it says so (:func:`ours`): the pictures and timelines carry moodstream's mark, a report's clip is
one its page lists; any other stays an input and is never written over (the output takes another name).
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from moodstream.shared.media import expand_paths, is_stream_spec, no_media
from moodstream.shared.table import plural, printable
from moodstream.worker.annotate import ours, safe_stem

log = logging.getLogger(__name__)

WRITTEN_BESIDE = (".jpg", ".png", ".webm")  # a summary's face pictures and timelines, a report's clips
# what the writers add after the input's name: a TIFF's page, the n that spares a taken name, a track id
TAIL = re.compile(r"(?:-page\d+)?(?:-\d+)?(?:-t\d+)?")


@dataclass(frozen=True)
class Output:
    """Something a command writes, named by the option that asked for it (said in the log line).
    ``folder``: the folder is the command's, all of it (``--annotate DIR``); otherwise a file
    (``--summary FILE``) with what it writes beside it."""

    option: str
    path: Path
    folder: bool = False


def expand_inputs(paths: Sequence[str], outputs: Iterable[Output], command: str) -> list[str]:
    """``paths`` expanded (:func:`shared.media.expand_paths`), a folder's files without those this
    command writes, or would write, inside it:

    * every file under an output folder (``--annotate ann``);
    * in an output file's folder, a file named ``<its stem>-<input><tail><ext>``, where ``<input>``
      is the name (:func:`worker.annotate.safe_stem`) of a file or stream among the inputs,
      ``<tail>`` what the writers add (``-page<k>``, then ``-<n>``, then ``-t<id>``, each optional)
      and ``<ext>`` ``.jpg``, ``.png`` or ``.webm``, as written: ``people-street-t0.jpg`` and
      ``people-street.png`` beside ``people.json`` when ``street.jpg`` is read, ``page-clip.webm``
      beside ``page.html`` when ``clip.mp4`` is, and that is the command's own (:func:`ours`: it carries
      moodstream's mark, the page lists it, or it is empty). A user's ``people-beach.jpg`` there stays
      an input unless ``beach.*`` is one too; a user's ``people-street-t0.jpg`` stays one as well (the
      summary's picture takes another name).

    An output file itself (``--summary people.json``) stays an input (and so is refused as an output:
    a photo named as the summary is not written over). A file named directly is read, and so is a
    folder that lies in an output folder (``analyze ann``).
    Files are compared by their real paths, each resolved once (a folder of 20,000 photos); the count
    left out is logged once, at INFO. The files left out are no inputs: a run writes over them."""
    outputs = list(outputs)
    found = [(p, list(expand_paths([p]))) for p in paths]
    if not outputs:
        return [s for _, specs in found for s in specs]
    folders = [(os.path.realpath(o.path), o.option) for o in outputs if o.folder]
    beside: dict[str, list[tuple[str, Output]]] = {}  # real folder -> [(the output's stem + "-", the output)]
    for o in outputs:  # its pictures go beside the name given (a link to elsewhere: beside the link)
        if not o.folder:
            beside.setdefault(os.path.realpath(o.path.parent), []).append((o.path.stem + "-", o))
    names: set[str] | None = None  # the inputs' names, made when a file beside an output needs them
    listed: dict[Path, frozenset[str]] = {}  # an output -> the files it names, read when a look-alike needs them

    def in_folder(real: str) -> str | None:
        return next((option for folder, option in folders
                     if real == folder or real.startswith(folder + os.sep)), None)

    def written_beside(real: str) -> str | None:
        nonlocal names
        stems = beside.get(os.path.dirname(real))
        base, ext = os.path.splitext(os.path.basename(real))
        if stems is None or ext not in WRITTEN_BESIDE:
            return None
        for prefix, output in stems:
            if not base.startswith(prefix):
                continue
            if names is None:
                names = {safe_stem(s) for _, specs in found for s in specs if s}
            rest = base[len(prefix):]  # <input><tail>: the input's name may hold dashes itself
            ends = [i for i, c in enumerate(rest) if c == "-"] + [len(rest)]
            if not any(rest[:i] in names and TAIL.fullmatch(rest, i) for i in ends):
                continue
            if output.path not in listed:  # what the output file names beside it: a page its clips (a clip
                listed[output.path] = _named_by(output)  # carries no mark), a summary its pictures (an earlier
            if ours(real, listed[output.path]):  # version marked none)
                return output.option
        return None

    kept: list[str] = []
    left_out: Counter[str] = Counter()
    for path, specs in found:
        if path == "-" or is_stream_spec(path) or not os.path.isdir(path) or in_folder(os.path.realpath(path)):
            kept.extend(specs)  # named directly
            continue
        for spec in specs:
            real = os.path.realpath(spec)
            option = in_folder(real) or written_beside(real)
            if option is None:
                kept.append(spec)
            else:
                left_out[option] += 1
    if left_out:
        log.info("%s: left out %s of the input folders (this command's outputs: %s); named directly, "
                 "they are read", command, plural(sum(left_out.values()), "file"),
                 ", ".join(f"{option} {n}" for option, n in sorted(left_out.items())))
    return kept


def _named_by(output: Output) -> frozenset[str]:
    """The files beside ``output`` that it names as its own: a report page's clips, a summary's pictures."""
    if output.option == "--report":
        from moodstream.worker.report import clips_on_page  # (cv2, the page's format: when needed)

        return clips_on_page(output.path)
    if output.option == "--summary":
        from moodstream.worker.tracking.summary import pictures_named

        return pictures_named(output.path)
    return frozenset()


def no_inputs(paths: Sequence[str], options: str) -> str:
    """What `analyze` and `up` say where :func:`expand_inputs` found nothing to read: no media at all,
    or only the files ``options`` (``--summary`` ...) wrote in a run before."""
    own = sum(1 for _ in expand_paths(list(paths)))
    if own:
        return (f"no images or videos in {printable(', '.join(paths))} but the {plural(own, 'file')} this "
                f"command writes ({options} of a run before), left out: name them directly to analyse them")
    return no_media(paths)
