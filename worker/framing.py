"""How a detector's box maps onto the square a FER+ face crop covers, torch-free.

The constants were measured by ``moodstream bench framing`` (trainer/bench/framing.py;
worker/crop.py's docstring has the method and the numbers); the torch crops (:mod:`worker.crop`)
and the numpy ones (:mod:`worker.onnx_classify`) both read them here.
"""

from __future__ import annotations

from dataclasses import dataclass

# ITU-R BT.601 luma, as OpenCV's RGB2GRAY (FER2013 images are 8-bit grey)
GRAY_WEIGHTS = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class Framing:
    """Square crop from a box: side = ``scale * sqrt(w * h)``, centred at the
    box centre shifted by ``(dx * w, dy * h)``."""

    scale: float
    dx: float = 0.0
    dy: float = 0.0


# measured as described in worker.crop's docstring
FRAMING: dict[str, Framing] = {
    "mtcnn": Framing(scale=1.16, dx=0.01, dy=-0.01),
    "haar": Framing(scale=1.04, dx=0.0, dy=0.0),
    "none": Framing(scale=1.0),  # the image is the face crop (worker.detectors.whole)
}


def framing_for(detector_name: str) -> Framing:
    """The framing measured for a detector; MTCNN's for unknown detectors."""
    return FRAMING.get(detector_name, FRAMING["mtcnn"])
