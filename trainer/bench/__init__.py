"""Benchmarks: commands that write JSON and a readable table, kept apart from tests.

* :mod:`trainer.bench.iou`: face-detection IoU on WIDER FACE val (the paper's Table 1),
  with and without box calibration (:mod:`trainer.bench.calibration_fit`).
* :mod:`trainer.bench.e2e`: detection + classification against emotion labels,
  beside the classifier alone on the same faces.
* :mod:`trainer.bench.wider`: WIDER FACE ground-truth parsing and scaling.
"""
