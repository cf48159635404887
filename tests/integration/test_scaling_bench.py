"""``moodstream bench scaling`` with one real worker process for a few seconds: the report's shape,
and that the frames were served and the backlog drained."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from moodstream.trainer.cli import bench


@pytest.mark.slow
def test_one_worker_for_three_seconds(tmp_path):
    pytest.importorskip("moodstream.worker.pipeline")  # the spawned worker needs the [worker] extra
    out = tmp_path / "scaling.json"
    res = CliRunner().invoke(bench, ["scaling", "--workers", "1", "--seconds", "3", "--rate", "4",
                                     "--out", str(out)])
    assert res.exit_code == 0, res.output
    r = json.loads(out.read_text())
    assert {"command", "machine", "video", "frame_size", "rate_fps", "seconds", "steps", "notes"} <= set(r)
    (step,) = r["steps"]
    cores = len(os.sched_getaffinity(0))
    assert step["workers"] == 1 and step["threads_per_worker"] == max(1, min(4, cores // 2))  # a worker's default
    assert step["sent"] == 12 and step["served"] == step["sent"]  # 4 frames/s for 3 s, all answered
    assert step["drained"] and step["time_to_drain_s"] >= 0 and step["throughput_fps"] > 0
    assert step["efficiency"] == 1.0
    assert step["series"] and {"t_s", "lag", "pending", "backlog", "results"} <= set(step["series"][0])
    assert step["series"][-1]["backlog"] == 0 and step["series"][-1]["results"] == step["sent"]
    major = int(r["machine"]["redis"].split(".")[0])
    if major >= 7:  # XINFO GROUPS reports lag from 7.0 on; before, the table says n/a rather than 0
        assert step["max_lag"] is not None and step["max_lag"] >= 0
    else:
        assert step["max_lag"] is None and "n/a / n/a" in out.with_suffix(".md").read_text()
    md = out.with_suffix(".md").read_text()
    assert "| workers |" in md and "flattens early" in md
    assert "| 1 | " in res.output  # the table is printed too


def test_worker_counts_are_checked():
    res = CliRunner().invoke(bench, ["scaling", "--workers", "0,2"])
    assert res.exit_code == 2 and "worker counts must be >= 1" in res.output
