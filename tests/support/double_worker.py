"""A worker process around the real Pipeline with FixedFaceDetectorTestDouble,
for tests that signal or kill it. Usage: python -m tests.support.double_worker '<json kwargs>'
with keys url, name, delay_s, crash_on_black (the process dies, as from a native
crash, on a batch holding an all-black frame) and any Settings fields."""

from __future__ import annotations

import json
import logging
import sys

from tests.support.doubles import CrashingDetectorTestDouble, FixedFaceDetectorTestDouble
from tests.support.streamkit import settings_for

from moodstream.worker.pipeline import Pipeline
from moodstream.worker.service import Worker

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    kw = json.loads(sys.argv[1])
    url, name, delay_s = kw.pop("url"), kw.pop("name"), kw.pop("delay_s", 0.0)
    crash = kw.pop("crash_on_black", False)
    settings = settings_for(url, **kw)
    detector = (CrashingDetectorTestDouble if crash else FixedFaceDetectorTestDouble)(delay_s)
    pipeline = Pipeline(settings, detector=detector)
    served = Worker(settings, pipeline, name=name).run()
    print(json.dumps({"served": served}), flush=True)
