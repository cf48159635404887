"""Which runtime runs the shipped ONNX files on this CPU, and in what precision:
measured on the machine, never assumed from its vendor.

The shipped ONNX files (``worker/data/onnx``) run on ONNX Runtime (backend
``onnx``, extra ``[cpu]``) or OpenVINO (backend ``openvino``, extra
``[openvino]``), each on its own form of the MTCNN nets
(:func:`worker.onnx_session.net_file`). Which is faster depends on the CPU: on
a 2-core Intel Xeon with AMX OpenVINO ran PNet 1.8x and RNet 1.5x faster in
fp32, and 2-7x faster in bf16; on a 2-core AMD EPYC (AVX2), before each
runtime had its own form, ONNX Runtime was faster on three of the four nets,
and with its own form OpenVINO was faster there too (probe 83 against 95 ms,
issue 26). So ``backend=auto`` on a CPU:

* one of the two installed: that one;
* both: :func:`measure` times each on the four nets at the input shapes the
  pipeline feeds them (:data:`PROBES`, weighted by how often a frame calls
  them), interleaved call by call so that load from other processes falls on
  both, for about :data:`PROBE_S` seconds, and takes the faster. OpenVINO is
  timed as it would run: with the nets' first layers compiled where
  :func:`choose_first_layers` took them. The choice is kept per CPU model, ISA,
  precision and runtime versions in a JSON file (setting ``runtime_cache``,
  default ``~/.cache/moodstream/runtime.json``), so it is measured once per
  machine kind, not at every start; timed on :data:`PROBE_THREADS` thread
  whatever a process's threads, so that ``analyze`` and the workers on one
  machine run one backend and give one answer.

Precision (setting ``precision``): bf16 only on OpenVINO and only on a CPU
with native bf16 (AMX or AVX512-BF16, read from ``/proc/cpuinfo``). ``auto``
takes it there for the nets in :data:`AUTO_BF16` only, those whose bf16
answers stay within issue 26's parity bounds, and screens the nets in
:data:`AUTO_SCREENED` in bf16 (their answers stay fp32's); ``bf16`` forces
it on every net; ``fp32`` forces full precision everywhere, screens included.
``moodstream bench bf16`` measures both rules on a CPU with native bf16.
``auto`` on OpenVINO runs the emotion net in the precision that serves a face
fastest on this CPU, measured like the backend (:func:`choose_emotion_precision`, kept
in the same file): fp32, its int8 file (:data:`AUTO_INT8`, within the same bounds:
``moodstream bench int8``) or, with native bf16, bf16. An int8 or bf16 emotion net runs
its close calls again in fp32 (``onnx_classify.CONFIRM_MARGINS``), so its top emotion is
fp32's, and the measurement charges each its share of those reruns
(:data:`RERUN_SHARES`). Without native bf16 the other nets run in fp32.

Where an MTCNN net runs on OpenVINO in fp32, unscreened (CPUs without native
bf16, or ``precision=fp32``), its first convolution, PReLU and pool may run
compiled before the rest of the net on OpenVINO
(:mod:`worker.detectors.first_layers`): :func:`choose_first_layers` times both
forms of each net here, once per CPU kind, kept in the same file.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from moodstream.shared import devices
from moodstream.shared.errors import ConfigError
from moodstream.shared.files import write_text_atomic
from moodstream.worker.onnx_session import EMOTION_FILE, MTCNN_FILES, ONNX_DIR, RUNTIMES, net_file, open_net
from moodstream.worker.onnx_classify import CONFIRM_MARGINS

log = logging.getLogger(__name__)

MODULES = {"onnx": "onnxruntime", "openvino": "openvino"}  # backend -> the module it needs
DISTRIBUTIONS = {"onnx": "onnxruntime", "openvino": "openvino"}  # backend -> its pip distribution
EXTRAS = {"onnx": "cpu", "openvino": "openvino"}  # backend -> the moodstream extra that installs it
PROBE_S = 0.6  # seconds of timing, all runtimes together (plus compiling the nets once)
# (file, input shape, calls per frame): what the pipeline feeds each net, weighted so that
# each net's share of a pass is about its share of a frame in `moodstream bench profile`
# (docs/results/profile_cpu.md: PNet in strips of about 60k pixels, worker.detectors.onnx_mtcnn.
# RUN_SIZES, 10-40 a frame; RNet / ONet in chunks of 64 / 16 crops; the emotion net on a few
# faces and their mirror images).
PROBES = (
    ("pnet", (1, 3, 84, 712), 12.0),
    ("rnet", (64, 3, 24, 24), 3.0),
    ("onet", (16, 3, 48, 48), 2.0),
    ("emotion", (8, 1, 48, 48), 1.0),
)
NET_FILES = {**MTCNN_FILES, "emotion": EMOTION_FILE}
# format 2: measured on each runtime's own form of the MTCNN files (onnx_session.net_file)
# and per-net precision; format 3: auto runs the emotion net in int8 on OpenVINO without
# native bf16 (AUTO_INT8); format 4: and with native bf16 but no AMX; format 5: the emotion
# net's precision on OpenVINO is measured too (choose_emotion_precision), and the backend
# measured with it; format 6: the emotion net's rerun margins and shares of 2026-12-04
# (RERUN_SHARES); format 7: the backend once per machine kind (not per thread count), OpenVINO
# timed with its compiled first layers. A choice kept in an earlier format was measured on other
# files or margins, or is keyed otherwise.
CACHE_FORMAT = "moodstream-runtime-choice/7"
NETS = tuple(NET_FILES)  # the pipeline's nets, pnet, rnet, onet, emotion: each in its own precision
# The nets `precision=auto` runs in bf16 where the CPU has it natively: those whose bf16
# answers stay within issue 26's bounds against fp32 (boxes one-to-one >= 97% at IoU 0.95 and
# >= 99% at 0.5, top emotion >= 98%, FER+ Test accuracy within 0.3 points). Measured by
# `moodstream bench bf16` (docs/results/bf16_parity.json: OpenVINO 2026.4 on a 2-core Xeon with
# AMX, against ONNX Runtime fp32, on 527 faces of 160 frames and FER+ Test's 3,545 faces):
# ONet bf16 kept 99.81% of boxes at IoU 0.95 (100% at 0.5); PNet bf16 83%, RNet bf16 95% (their
# candidates move, and with them every later crop); the emotion net bf16 kept 99.92% of top
# emotions and its accuracy (84.51% both).
AUTO_BF16 = ("onet", "emotion")
# The nets `precision=auto` screens in bf16 where the CPU has it natively: every crop runs in
# bf16 first, and only those within worker.detectors.onnx_mtcnn.SCREEN_MARGIN of the threshold
# run again in fp32, whose answer is kept, so the answers are fp32's. Over 56,265 real RNet
# crops (bench bf16's frames) bf16 scores differed from fp32 by at most 0.044 (99.9th
# percentile 0.023); a 0.2 margin sends 15% of the crops on to fp32 and missed none. PNet is
# screened cell by cell on large scales (onnx_mtcnn.PNET_SCREEN_MIN_PIXELS): over the
# 16,399,760 cells of the screened scales of bench bf16's 1080p, 360p and WIDER frames, bf16
# face probabilities differed from fp32 by at most 0.086 (2-core Zen 4: bf16_parity_zen4.json);
# the margin sends 1.1% of them on to fp32 and missed none.
AUTO_SCREENED = ("pnet", "rnet")
# The nets `precision=auto` runs in int8 on OpenVINO (every CPU without AMX, and the AMX Xeons too
# since 2026-12-05: below): the emotion net only, quantized by `moodstream export int8` (onnx_session.INT8_FILES). Measured by
# `moodstream bench int8` (docs/results/int8_parity_amd.json, 2-core AMD EPYC, AVX2): FER+ Test
# accuracy 84.51% as in fp32, top emotion the same on 99.63% of its faces and on 98.04% of the 510
# faces MTCNN finds in 200 WIDER images (bound: 98%), 2.0x as fast.
# The MTCNN nets quantized the same way ran slower there (PNet 0.64-0.93x, RNet and ONet 0.76x:
# few channels, and a quantize / dequantize around every PReLU), so they stay fp32.
# With native bf16 but no AMX (a 2-core AMD EPYC Zen 4, AVX512-BF16 and VNNI:
# docs/results/int8_parity_zen4.json), int8 is also faster than bf16 there: 19.4 ms against 33.3
# (fp32 68.9) for 32 crops, with the same answers as on the AVX2 EPYC value for value; MTCNN in int8
# was slower there too (PNet 0.56x of bf16, RNet 0.38x, ONet 0.43x). With AMX, bf16 tiles ran
# the emotion net 5.9x faster than fp32 (16 crops: 3.7 against 21.7 ms, the probe in issue 26 on a
# 2-core Xeon), and int8 alone a little faster still (32 crops: 5.3 ms against bf16's 5.9, fp32 35.1).
# As served, each with its fp32 reruns, bf16 was faster there with the margins before 2026-12-04 (0.61
# against 0.72 ms a face on WIDER's faces: docs/results/int8_parity_xeon.json); with bf16's wider
# margin int8 reruns fewer faces than bf16 (RERUN_SHARES), and those figures make int8 faster there too
# (about 0.65 against 0.78 ms a face by arithmetic; measured on a third Xeon, 2026-12-05: 0.74 against
# 0.90, docs/results/cpu/intel-f6-m167/third_machine/int8_parity.json, and auto chose int8 there).
# int8 alone flipped near ties: 2 of bench throughput's 56 faces at 1080p on a 2-core Zen 5 EPYC
# (96.4%), 10 of WIDER's 510 (98.04%); bf16 5 of those 510 (99.0%, Xeon with AMX). So each face
# whose top two int8 or bf16 probabilities are within onnx_classify.CONFIRM_MARGINS runs again in
# fp32, and its answer is fp32's (100% of both on Zen 5 in int8 and on the Xeon in bf16; on Zen 5
# 10.3 ms for 32 crops in int8 alone, bf16 16.0, fp32 33.0: int8_parity_zen5.json).
AUTO_INT8 = ("emotion",)
# The share of faces an int8 or bf16 emotion net runs again in fp32 (within
# onnx_classify.CONFIRM_MARGINS of a tie): on the 510 faces MTCNN finds in 200 WIDER images,
# the detected faces users send (more near ties than FER+ Test's: int8 8%, bf16 11%), int8 14%
# and bf16 19% (a 2-core Zen 4 EPYC, docs/results/cpu/amd-f25-m17/fifth_machine/int8_parity.json;
# with the margins before 2026-12-04, 0.1 and 0.05: int8 17.6-18% on every CPU measured, bf16 11%
# on the Xeon with AMX).
# A face then costs its own run plus this share of an fp32 run.
RERUN_SHARES = {"int8": 0.14, "bf16": 0.19}
# what choose_emotion_precision times: a run of 16 crops (8 faces and their mirror images)
EMOTION_PROBE = (16, 1, 48, 48)
EMOTION_PROBE_S = 0.4  # seconds of timing, all precisions together (plus compiling each once)
# threads every once-per-machine-kind choice (backend, emotion precision, first layers) is timed
# on: a worker's default on 2 cores; one machine, one choice, whatever a process's threads
PROBE_THREADS = 1


# --- the CPU ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CpuInfo:
    """The CPU's model name and its ISA flags (``/proc/cpuinfo``)."""

    model: str
    flags: frozenset[str] = field(default_factory=frozenset)

    @property
    def native_bf16(self) -> bool:
        """bf16 arithmetic in hardware: AMX-BF16 or AVX512-BF16."""
        return bool(self.flags & {"amx_bf16", "avx512_bf16"})

    @property
    def amx(self) -> bool:
        """Intel's matrix tiles (AMX), where bf16 outruns everything else OpenVINO runs."""
        return bool(self.flags & {"amx_tile", "amx_bf16", "amx_int8"})

    def isa(self) -> dict[str, bool]:
        """The flags that decide CPU inference speed."""
        f = self.flags
        return {"avx2": "avx2" in f, "avx512": "avx512f" in f, "vnni": bool(f & {"avx512_vnni", "avx_vnni"}),
                "avx512_bf16": "avx512_bf16" in f, "amx": self.amx}

    def to_dict(self) -> dict:
        return {"model": self.model, **self.isa()}


def cpu_info(path: str | Path = "/proc/cpuinfo") -> CpuInfo:
    """This machine's CPU (the first processor listed); model "unknown" where
    ``path`` cannot be read (not Linux)."""
    model, flags = "unknown", frozenset()
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return CpuInfo(model, flags)
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model == "unknown":
            model = " ".join(value.split())
        elif key in ("flags", "Features") and not flags:
            flags = frozenset(value.split())
    return CpuInfo(model, flags)


# --- precision and backend ---------------------------------------------------------------


def resolve_precision(precision: str, backend: str, cpu: CpuInfo) -> str:
    """The ``precision`` setting for ``backend`` on ``cpu``: "fp32" or "bf16"
    (``auto``: bf16 on openvino where the CPU has native bf16). A forced bf16
    that cannot run natively is one clear error."""
    if precision == "auto":
        return "bf16" if backend == "openvino" and cpu.native_bf16 else "fp32"
    if precision == "bf16":
        if backend != "openvino":
            raise ConfigError(f"precision bf16 runs on the openvino backend, not {backend}: use backend openvino "
                              "(pip install 'moodstream[openvino]') or precision fp32")
        if not cpu.native_bf16:
            raise ConfigError(f"precision bf16 needs a CPU with native bf16 (AMX or AVX512-BF16); {cpu.model} "
                              "has neither: use precision fp32 or auto")
    return precision


def net_precisions(precision: str, backend: str, cpu: CpuInfo, emotion: str | None = None) -> dict[str, str]:
    """Per net (:data:`NETS`): "fp32", "bf16" or "int8". ``auto`` on openvino:
    bf16 for the MTCNN nets in :data:`AUTO_BF16` where the CPU has native bf16, the
    rest fp32, and the emotion net in ``emotion``, the precision measured on this CPU
    (:func:`choose_emotion_precision`; None: what that measurement gives from the figures of the
    CPUs measured so far, int8, which it can overrule; bf16 with AMX until bf16's rerun margin
    widened, :data:`RERUN_SHARES`). ``bf16``: every net."""
    arithmetic = resolve_precision(precision, backend, cpu)
    if precision != "auto" or backend != "openvino":
        return {net: arithmetic for net in NETS}
    bf16 = arithmetic == "bf16"  # native bf16 here
    if emotion is None:
        emotion = "int8"
    if emotion not in emotion_candidates(cpu):
        raise ConfigError(f"the emotion net cannot run in {emotion} on {cpu.model}: "
                          f"one of {', '.join(emotion_candidates(cpu))}")
    return {net: emotion if net == "emotion" else "bf16" if bf16 and net in AUTO_BF16 else "fp32" for net in NETS}


def emotion_candidates(cpu: CpuInfo) -> tuple[str, ...]:
    """The precisions ``auto`` may run the emotion net in on OpenVINO: fp32, int8
    (:data:`AUTO_INT8`) and, with native bf16, bf16 (each within issue 26's bounds)."""
    return ("fp32", "int8", "bf16") if cpu.native_bf16 else ("fp32", "int8")


def served_ms(ms: dict[str, float]) -> dict[str, float]:
    """Per precision, a run's time as served: its own plus its share of fp32 reruns
    (:data:`RERUN_SHARES`) at fp32's measured time."""
    return {p: round(t + RERUN_SHARES.get(p, 0.0) * ms["fp32"], 3) for p, t in ms.items()}


def pick_emotion_precision(ms: dict[str, float]) -> str:
    """The precision whose run of the emotion net serves its faces fastest
    (:func:`served_ms`); fp32 on a tie (nothing to rerun)."""
    served = served_ms(ms)
    return min(served, key=lambda p: (served[p], p != "fp32"))


def screened_nets(precision: str, backend: str, cpu: CpuInfo) -> tuple[str, ...]:
    """The nets screened in bf16 before fp32 (:data:`AUTO_SCREENED`): under ``auto``
    on openvino with native bf16 only (``fp32`` means no bf16 at all; ``bf16``
    runs those nets in bf16 outright)."""
    if precision == "auto" and resolve_precision(precision, backend, cpu) == "bf16":
        return AUTO_SCREENED
    return ()


def describe(precisions: dict[str, str], screened: tuple[str, ...] = ()) -> str:
    """``{"pnet": "fp32", "rnet": "fp32", "onet": "bf16", "emotion": "bf16"}`` ->
    "pnet+rnet fp32, onet+emotion bf16"; one value when all agree. ``screened``
    (:func:`screened_nets`) adds e.g. "; rnet screened in bf16"; an int8 or bf16 emotion net,
    whose close calls run again in fp32, "; emotion's close calls in fp32"."""
    values = list(dict.fromkeys(precisions.values()))
    if len(values) == 1:
        text = values[0]
    else:
        text = ", ".join("+".join(n for n, p in precisions.items() if p == v) + f" {v}" for v in values)
    text += f"; {'+'.join(screened)} screened in bf16" if screened else ""
    return text + ("; emotion's close calls in fp32" if precisions.get("emotion") in CONFIRM_MARGINS else "")


def require(backend: str) -> None:
    """One line naming the extra when ``backend``'s runtime is not installed."""
    if not devices.installed(MODULES[backend]):
        raise ConfigError(f"backend {backend} needs {DISTRIBUTIONS[backend]}: "
                          f"pip install 'moodstream[{EXTRAS[backend]}]'")


def installed_runtimes() -> list[str]:
    return [b for b in RUNTIMES if devices.installed(MODULES[b])]


@dataclass
class Choice:
    """What ``backend=auto`` runs on this CPU and why: ``how`` is "measured",
    "cached" (measured before on this CPU kind) or "only one installed"."""

    backend: str
    precision: str  # :func:`describe` of its stage precisions
    how: str
    ms: dict[str, float] = field(default_factory=dict)  # weighted ms per probe workload, per backend


def _fastest(rows: list[dict[str, Callable[[], object]]], budget_s: float) -> list[dict[str, float]]:
    """Per row, each call's fastest time (s): every call runs once untimed (allocation, shape
    inference, kernel choice), then row by row, the calls of a row alternating their order
    round by round so that load from other processes falls on all of them, for at least
    3 rounds and ``budget_s`` seconds (the fastest: that load only ever adds time)."""
    for row in rows:
        for call in row.values():
            call()
    times = [{name: [] for name in row} for row in rows]
    start, rounds = time.perf_counter(), 0
    while rounds < 3 or time.perf_counter() - start < budget_s:
        for row, row_times in zip(rows, times):
            for name in (list(row) if rounds % 2 == 0 else list(row)[::-1]):
                t0 = time.perf_counter()
                row[name]()
                row_times[name].append(time.perf_counter() - t0)
        rounds += 1
    return [{name: min(t) for name, t in row_times.items()} for row_times in times]


def measure(backends: list[str], precisions: dict[str, dict[str, str]], threads: int, budget_s: float = PROBE_S,
            model_dir: Path = ONNX_DIR, first: dict[str, tuple[str, ...]] | None = None) -> dict[str, float]:
    """Each backend's time (ms) for one weighted pass over :data:`PROBES`: the
    fastest of each net's calls times its weight, summed (:func:`_fastest`: calls alternate
    between backends, and their order, so background load falls on both).
    ``precisions``: per backend, :func:`net_precisions`. Each backend runs its
    own form of the files (:func:`worker.onnx_session.net_file`); ``first``: per backend, the
    MTCNN nets run with their first layers compiled (:func:`first_layers_here`)."""
    rng = np.random.default_rng(0)
    inputs = [rng.uniform(-1, 1, shape).astype(np.float32) for _, shape, _ in PROBES]

    def net(b: str, name: str):
        path = net_file(model_dir, NET_FILES[name], b, precisions[b][name])
        if name in (first or {}).get(b, ()):
            from moodstream.worker.detectors.first_layers import SplitNet

            return SplitNet(path, name, threads)
        return open_net(path, threads, b, precisions[b][name])

    nets = {b: [net(b, name) for name, _, _ in PROBES] for b in backends}
    fastest = _fastest([{b: functools.partial(nets[b][k].run, x) for b in backends} for k, x in enumerate(inputs)],
                       budget_s)
    return {b: round(sum(row[b] * w for row, (_, _, w) in zip(fastest, PROBES)) * 1e3, 3) for b in backends}


def default_cache_path() -> Path:
    return Path.home() / ".cache" / "moodstream" / "runtime.json"


def _versions() -> dict[str, str]:
    out = {}
    for b, dist in DISTRIBUTIONS.items():
        try:
            out[b] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[b] = "-"
    return out


def cache_key(cpu: CpuInfo, precision: str) -> str:
    """One machine kind: CPU model and ISA, precision setting, runtime versions (not threads:
    every choice is timed on :data:`PROBE_THREADS`)."""
    isa = ",".join(k for k, v in cpu.isa().items() if v) or "-"
    versions = ",".join(f"{b}={v}" for b, v in _versions().items())
    return f"{cpu.model} [{isa}] precision={precision} {versions}"


CACHE_FORMATS = "moodstream-runtime-choice/"  # what every format's name starts with


NOT_OURS = "not a moodstream runtime cache: left as it is"


def _load(path: Path) -> tuple[str | None, dict]:
    """The runtime cache at ``path``: why moodstream may not write it (None where it may: absent,
    empty, or a moodstream runtime cache of any format), and its choices of this format that are
    objects. Anything else (a user's own file, a directory, a FIFO, JSON of another shape) is
    read as no choices, and never written."""
    try:
        if not path.exists():
            return None, {}
        if not path.is_file():  # a directory; a FIFO would block the read
            return "not a file", {}
        text = path.read_bytes()
    except OSError as exc:
        return str(exc), {}
    if not text.strip():
        return None, {}
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, nested past the parser's depth
        return NOT_OURS, {}
    if not (isinstance(data, dict) and isinstance(data.get("format"), str) and data["format"].startswith(CACHE_FORMATS)):
        return NOT_OURS, {}
    choices = data.get("choices") if data["format"] == CACHE_FORMAT else None
    return None, {k: v for k, v in choices.items() if isinstance(v, dict)} if isinstance(choices, dict) else {}


def _read_cache(path: Path) -> dict:
    return _load(path)[1]


_warned: set[str] = set()  # the cache files this process has warned of, once each


def _warn(path: Path, why: str) -> None:
    if str(path) not in _warned:
        _warned.add(str(path))
        log.warning("runtime: cannot keep the measured choices in %s (%s); they will be measured at every start "
                    "(set runtime_cache to another file, or off)", path, why)


@contextlib.contextmanager
def _locked(folder: Path):
    """The cache's folder locked against other processes' writes (flock on the folder itself,
    so no lock file is left): each write reads, merges and replaces the file under it."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _write_cache(path: Path, key: str, entry: dict) -> None:
    """Add ``entry`` under ``key``: read, merged and replaced atomically under a lock (workers
    starting together write at once), keeping the file's mode (a new one: 0666 less the umask).
    Only a file moodstream may write (:func:`_load`) is written; else a warning, once."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(path.parent):
            refused, choices = _load(path)
            if refused:
                _warn(path, refused)
                return
            choices[key] = {**entry, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            write_text_atomic(path, json.dumps({"format": CACHE_FORMAT, "choices": choices}, indent=1))
    except OSError as exc:
        _warn(path, str(exc))


def _floats(ms: object) -> dict[str, float]:
    """A kept entry's timings, where they are what was written (a name to a number), else none."""
    return {k: v for k, v in ms.items() if isinstance(v, (int, float))} if isinstance(ms, dict) else {}


def _cache_path(cache: str | None) -> Path | None:
    return None if cache == "off" else Path(cache).expanduser() if cache else default_cache_path()


def _once_per_kind(choices: dict, cache: str | None, key: str, from_kept: Callable[[dict], object | None],
                   measured: Callable[[], tuple[object, dict]]):
    """A choice made once per CPU kind (``key``): this process's (``choices``), else the one kept in
    ``cache`` (``from_kept``: the choice, or None where the entry no longer applies), else
    ``measured()`` (the choice and the entry to keep)."""
    path = _cache_path(cache)
    memo = (str(path), key)
    if memo not in choices:
        kept = _read_cache(path).get(key) if path else None
        choice = from_kept(kept) if kept else None
        if choice is None:
            choice, entry = measured()
            if path:
                _write_cache(path, key, entry)
        choices[memo] = choice
    return choices[memo]


def measure_emotion(precisions: tuple[str, ...], threads: int, budget_s: float = EMOTION_PROBE_S,
                    model_dir: Path = ONNX_DIR) -> dict[str, float]:
    """Per precision, the emotion net's fastest run (ms) of :data:`EMOTION_PROBE`
    crops on OpenVINO, calls interleaved as in :func:`measure`."""
    x = np.random.default_rng(0).uniform(0, 1, EMOTION_PROBE).astype(np.float32)
    nets = {p: open_net(net_file(model_dir, EMOTION_FILE, "openvino", p), threads, "openvino", p) for p in precisions}
    fastest = _fastest([{p: functools.partial(net.run, x) for p, net in nets.items()}], budget_s)[0]
    return {p: round(t * 1e3, 3) for p, t in fastest.items()}


@dataclass
class EmotionChoice:
    """The emotion net's precision under ``precision=auto`` on OpenVINO, and why:
    ``how`` "measured" or "cached" (measured before on this CPU kind); ``ms``: each
    candidate's run of :data:`EMOTION_PROBE` crops alone, ``served_ms`` with its reruns."""

    precision: str
    how: str
    ms: dict[str, float] = field(default_factory=dict)
    served_ms: dict[str, float] = field(default_factory=dict)


_emotion_choices: dict[tuple[str, str], EmotionChoice] = {}  # (cache file, key) -> this process's choice


def emotion_cache_key(cpu: CpuInfo) -> str:
    """The emotion net's precision is one per machine kind: CPU model and ISA, runtime versions
    (not threads: see :func:`choose_emotion_precision`)."""
    return "emotion " + cache_key(cpu, "auto")


def choose_emotion_precision(cache: str | None = None, cpu: CpuInfo | None = None,
                             budget_s: float = EMOTION_PROBE_S) -> EmotionChoice:
    """``precision=auto``'s emotion net on OpenVINO: of :func:`emotion_candidates`, the
    one that serves a face fastest here (:func:`pick_emotion_precision` on
    :func:`measure_emotion`), measured once per CPU kind and kept in ``cache``
    (the ``runtime_cache`` setting, as :func:`choose`) and for the process.
    Timed on :data:`PROBE_THREADS` thread whatever a process's threads: the precision
    decides the probabilities, so every process on a machine must run the same one (on a
    2-core Zen 1, measured per thread count, ``analyze`` on 2 threads took int8 and a
    worker on 1 fp32, and their summaries of one file differed by 0.002).
    On a 2-core Zen 1 EPYC (AVX2 on 128-bit units) int8 ran 32 crops in 184.6 ms
    against fp32's 191.4 (docs/results/cpu/amd-f23-m1/int8_parity.json): with its reruns,
    slower than fp32; on a Zen 3 it ran them 2.1x as fast as fp32, on a Zen 4 3.6x."""
    cpu = cpu or cpu_info()
    require("openvino")
    candidates = emotion_candidates(cpu)

    def from_kept(kept: dict) -> EmotionChoice | None:
        return (EmotionChoice(kept["precision"], "cached", _floats(kept.get("ms")), _floats(kept.get("served_ms")))
                if kept.get("precision") in candidates else None)

    def measured() -> tuple[EmotionChoice, dict]:
        ms = measure_emotion(candidates, PROBE_THREADS, budget_s)
        choice = EmotionChoice(pick_emotion_precision(ms), "measured", ms, served_ms(ms))
        log.info("runtime: auto measured the emotion net on %s, %d thread(s), %d crops a run: %s (with reruns): %s",
                 cpu.model, PROBE_THREADS, EMOTION_PROBE[0],
                 ", ".join(f"{p} {v:.1f} ms" for p, v in choice.served_ms.items()), choice.precision)
        return choice, {"precision": choice.precision, "ms": choice.ms, "served_ms": choice.served_ms}

    return _once_per_kind(_emotion_choices, cache, emotion_cache_key(cpu), from_kept, measured)


# --- the MTCNN nets' first layers ------------------------------------------------------------

# what choose_first_layers times, per net: the input PNet runs most at 360p (the largest scale,
# 0.6 of the frame), a full RNet run, half an ONet run; one thread, as the emotion net's probe
# (one machine, one choice)
FIRST_PROBES = {"pnet": (1, 3, 217, 385), "rnet": (64, 3, 24, 24), "onet": (32, 3, 48, 48)}
FIRST_PROBE_S = 0.3  # seconds of timing, all nets and both forms together (plus compiling each once)
# a net's compiled first layers are taken where they make it at least 3% faster; within that,
# noise could flip the choice between machines of one kind for no gain
FIRST_GAIN = 0.97


@dataclass
class FirstLayersChoice:
    """The MTCNN nets whose first layers run compiled (:mod:`worker.detectors.first_layers`)
    where they run on OpenVINO in fp32, unscreened, and why: ``how`` "measured", "cached" or
    "unavailable" (no AVX2 / FMA, or the module not built); ``ms``: per net, each form's fastest
    run of its :data:`FIRST_PROBES` input ("openvino": the whole net there, "compiled")."""

    nets: tuple[str, ...]
    how: str
    ms: dict[str, dict[str, float]] = field(default_factory=dict)


_first_choices: dict[tuple[str, str], FirstLayersChoice] = {}  # (cache file, key) -> this process's choice


def first_layers_cache_key(cpu: CpuInfo) -> str:
    """One per machine kind, as the emotion net's precision (the nets' outputs differ by a few 1e-6),
    and per build of the compiled module (a faster kernel is measured again)."""
    from moodstream.worker.detectors import first_layers

    return f"first layers {cache_key(cpu, 'fp32')} kernels={first_layers.build()}"


def measure_first_layers(threads: int = PROBE_THREADS, budget_s: float = FIRST_PROBE_S,
                         model_dir: Path = ONNX_DIR) -> dict[str, dict[str, float]]:
    """Per MTCNN net, its fastest run (ms) of its :data:`FIRST_PROBES` input on OpenVINO in fp32,
    whole ("openvino") and with its first layers compiled ("compiled"), calls interleaved as in
    :func:`measure`."""
    from moodstream.worker.detectors.first_layers import SplitNet

    rng = np.random.default_rng(0)
    rows = []
    for net, shape in FIRST_PROBES.items():
        path = net_file(model_dir, MTCNN_FILES[net], "openvino")
        x = rng.uniform(-1, 1, shape).astype(np.float32)
        forms = {"openvino": open_net(path, threads, "openvino", "fp32"), "compiled": SplitNet(path, net, threads)}
        rows.append({k: functools.partial(f.run, x) for k, f in forms.items()})
    fastest = _fastest(rows, budget_s)
    return {net: {k: round(v * 1e3, 3) for k, v in row.items()} for net, row in zip(FIRST_PROBES, fastest)}


def choose_first_layers(cache: str | None = None, cpu: CpuInfo | None = None,
                        budget_s: float = FIRST_PROBE_S) -> FirstLayersChoice:
    """The MTCNN nets that run faster here with their first layers compiled
    (:func:`measure_first_layers`: those taking at most :data:`FIRST_GAIN` of the whole net's
    time), measured once per CPU kind and kept in ``cache`` (the ``runtime_cache`` setting, as
    :func:`choose`) and for the process."""
    from moodstream.worker.detectors import first_layers

    if not first_layers.available():
        return FirstLayersChoice((), "unavailable")
    cpu = cpu or cpu_info()
    require("openvino")

    def from_kept(kept: dict) -> FirstLayersChoice | None:
        nets = kept.get("nets")
        ok = isinstance(nets, list) and all(isinstance(n, str) and n in first_layers.NETS for n in nets)
        ms = kept.get("ms")
        return FirstLayersChoice(tuple(nets), "cached", ms if isinstance(ms, dict) else {}) if ok else None

    def measured() -> tuple[FirstLayersChoice, dict]:
        ms = measure_first_layers(budget_s=budget_s)
        nets = tuple(n for n, m in ms.items() if m["compiled"] <= FIRST_GAIN * m["openvino"])
        log.info("runtime: measured the MTCNN nets on %s, 1 thread, whole on OpenVINO / first layers compiled: %s; "
                 "compiled: %s", cpu.model, ", ".join(f"{n} {m['openvino']:.2f} / {m['compiled']:.2f} ms"
                                                     for n, m in ms.items()), ", ".join(nets) or "none")
        return FirstLayersChoice(nets, "measured", ms), {"nets": list(nets), "ms": ms}

    return _once_per_kind(_first_choices, cache, first_layers_cache_key(cpu), from_kept, measured)


def first_layers_here(backend: str, precisions: dict[str, str], screened: tuple[str, ...],
                      cache: str | None = None, cpu: CpuInfo | None = None) -> tuple[str, ...]:
    """The MTCNN nets a detector on ``backend`` runs with their first layers compiled: of those
    that run on OpenVINO in fp32, unscreened (all three on CPUs without native bf16, or with
    ``precision=fp32``), the ones :func:`choose_first_layers` measured faster so."""
    from moodstream.worker.detectors.first_layers import eligible

    may = eligible(backend, precisions, screened)
    return tuple(n for n in choose_first_layers(cache, cpu).nets if n in may) if may else ()


def precisions_here(precision: str, backend: str, cache: str | None = None,
                    cpu: CpuInfo | None = None) -> dict[str, str]:
    """:func:`net_precisions` with the emotion net's precision measured on this CPU
    (:func:`choose_emotion_precision`) where ``precision`` is auto on openvino."""
    cpu = cpu or cpu_info()
    emotion = choose_emotion_precision(cache, cpu).precision if precision == "auto" and backend == "openvino" else None
    return net_precisions(precision, backend, cpu, emotion)


_backend_choices: dict[tuple[str, str], Choice] = {}  # (cache file, key) -> this process's choice


def choose(precision: str, cache: str | None = None, cpu: CpuInfo | None = None,
           budget_s: float = PROBE_S) -> Choice:
    """``backend=auto`` on a CPU: the installed runtime that runs the shipped
    nets faster here (see the module docstring), measured once per CPU kind on
    :data:`PROBE_THREADS` thread and kept for the process. ``cache``: the
    ``runtime_cache`` setting (None: :func:`default_cache_path`; "off": none)."""
    cpu = cpu or cpu_info()
    candidates = installed_runtimes()
    if precision == "bf16":  # forced: only OpenVINO computes in bf16
        candidates = [b for b in candidates if b == "openvino"] or ["openvino"]
    if not candidates:
        raise ConfigError("no CPU runtime is installed: pip install 'moodstream[cpu]' (ONNX Runtime) or "
                          "'moodstream[openvino]'")
    precisions = {b: precisions_here(precision, b, cache, cpu) for b in candidates}

    def described(backend: str) -> str:
        return describe(precisions[backend], screened_nets(precision, backend, cpu))

    if len(candidates) == 1:
        require(candidates[0])
        return Choice(candidates[0], described(candidates[0]), "only one installed")

    def from_kept(kept: dict) -> Choice | None:
        return (Choice(kept["backend"], described(kept["backend"]), "cached", _floats(kept.get("ms")))
                if kept.get("backend") in candidates else None)

    def measured() -> tuple[Choice, dict]:
        first = {b: first_layers_here(b, precisions[b], screened_nets(precision, b, cpu), cache, cpu)
                 for b in candidates}
        ms = measure(candidates, precisions, PROBE_THREADS, budget_s, first=first)
        best = min(candidates, key=ms.__getitem__)
        choice = Choice(best, described(best), "measured", ms)
        log.info("runtime: auto measured %s on %s, %d thread(s): %s", ", ".join(f"{b} {v:.1f} ms" for b, v in ms.items()),
                 cpu.model, PROBE_THREADS, best)
        return choice, {"backend": choice.backend, "precision": choice.precision, "ms": choice.ms}

    return _once_per_kind(_backend_choices, cache, cache_key(cpu, precision), from_kept, measured)
