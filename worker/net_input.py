"""What a net (:class:`worker.onnx_session.Net`) accepts, checked before a runtime sees it.

The pipeline only sends the nets inputs they fit (crops of 24 / 48 pixels, pyramid scales of
12 pixels or more, no empty batch), but an API user may not. Unchecked, OpenVINO answered an
empty batch and an input too small for PNet with the previous call's outputs, and a run after
them could crash the process (its CPU plugin, a segfault); ONNX Runtime raised its own errors on
an empty RNet or ONet batch. So every net: an input of the wrong rank, channels or fixed size,
or too small for a net with free height and width, raises ValueError; an empty batch answers
empty outputs of the shapes a batch of one would have.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

Dims = tuple[int | None, ...]  # a net's input shape, None where free (the batch; PNet's height, width)


def dims(shape: Sequence[object]) -> Dims:
    """A runtime's input shape (ints where fixed; strings, None or -1 where free) as :data:`Dims`."""
    return tuple(d if isinstance(d, int) and d > 0 else None for d in shape)


def shown(d: Dims) -> str:
    return "(" + ", ".join("?" if v is None else str(v) for v in d) + ")"


def check(x: np.ndarray, expected: Dims, name: str, smallest: tuple[int, ...] | None = None) -> None:
    """ValueError unless ``x``'s shape fits ``expected``, and where the net's height and width are
    free, unless they are at least ``smallest`` (height, width)."""
    bad = x.ndim != len(expected) or any(e is not None and d != e for d, e in zip(x.shape, expected))
    if not bad and smallest is not None:
        bad = any(d < s for d, s in zip(x.shape[-len(smallest):], smallest))
    if bad:
        least = f", height and width at least {smallest[0]} x {smallest[1]}" if smallest else ""
        raise ValueError(f"{name}: input {tuple(x.shape)} does not fit {shown(expected)}{least}")


def empty_outputs(run: Callable[[np.ndarray], list[np.ndarray]], x: np.ndarray) -> list[np.ndarray]:
    """The outputs of an empty batch ``x``: a batch of one's, cut to none."""
    return [np.empty((0, *o.shape[1:]), o.dtype) for o in run(np.zeros((1, *x.shape[1:]), np.float32))]


def smallest(expected: Dims, fits: Callable[[int, int], bool], largest: int = 256) -> tuple[int, int] | None:
    """Where the height and width of an (n, c, h, w) input are free: the least height (at width
    ``largest``) and the least width (at height ``largest``) that ``fits`` the net, by bisection
    (a net of convolutions and pools fits any input at least that large in both). None where
    they are fixed, or where not even ``largest`` fits."""
    if len(expected) != 4 or expected[2] is not None or expected[3] is not None:
        return None
    if not fits(largest, largest):
        return None
    least = []
    for probe in (lambda s: fits(s, largest), lambda s: fits(largest, s)):
        lo, hi = 1, largest  # hi fits
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if probe(mid) else (mid + 1, hi)
        least.append(hi)
    return least[0], least[1]
