"""Face detectors behind one interface (:class:`Detector`).

======================  ==================================  =======
detector                module                              torch
======================  ==================================  =======
MTCNN, reference        worker/detectors/mtcnn_reference.py yes (facenet-pytorch)
MTCNN, batched          worker/detectors/mtcnn_batched.py   yes (GPU-resident; mtcnn_ops.py)
MTCNN, ONNX / OpenVINO  worker/detectors/onnx_mtcnn.py      no
Haar cascade            worker/detectors/haar.py            no
======================  ==================================  =======

:mod:`.base` holds what they share (the protocol, :class:`Face`,
:func:`group_by_size`); :mod:`.registry` lists them and builds one
(:func:`build_detector`), importing each detector module only when built, so
this package (and the ONNX backend) needs no torch.
"""

from __future__ import annotations

from moodstream.worker.detectors.base import Detector, Face, group_by_size
from moodstream.worker.detectors.registry import build_detector, resolve_mtcnn_impl

__all__ = ["Detector", "Face", "build_detector", "group_by_size", "resolve_mtcnn_impl"]
