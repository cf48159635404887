"""A worker process around the real Pipeline with FixedFaceDetectorTestDouble,
for tests that signal or kill it. Usage: python double_worker.py '<json kwargs>'
with keys url, name, delay_s and any Settings fields."""

from __future__ import annotations

import json
import logging
import sys

from doubles import FixedFaceDetectorTestDouble
from streamkit import settings_for

from worker.pipeline import Pipeline
from worker.service import Worker

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    kw = json.loads(sys.argv[1])
    url, name, delay_s = kw.pop("url"), kw.pop("name"), kw.pop("delay_s", 0.0)
    settings = settings_for(url, **kw)
    pipeline = Pipeline(settings, detector=FixedFaceDetectorTestDouble(delay_s))
    served = Worker(settings, pipeline, name=name).run()
    print(json.dumps({"served": served}), flush=True)
