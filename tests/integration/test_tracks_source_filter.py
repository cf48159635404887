"""`moodstream tracks --from-start --source NAME` whose NAME the stream holds no summary of (a typo, or
`clip.mp4` for a source sent as `samples/clip.mp4`): it said "no summaries yet (`moodstream track`
adds one when a source run ends)", sending the user to look at the track stage, while the stream held
summaries of other sources. Now it says none of the N summaries is of that source, and names the
sources it holds, the closest first (a name ending the same way: the path it was sent as)."""

from __future__ import annotations

from click.testing import CliRunner

from moodstream.worker.tracking.reader import tracks
from tests.support.streamkit import add_picture_summary


def run(redis_url, *args):
    return CliRunner().invoke(tracks, ["--from-start", *args, "--redis-url", redis_url, "--prefix", "t"])


def test_a_source_the_stream_holds_no_summary_of_is_said_with_those_it_holds(redis_url, client, keys):
    for name in ("cam-1", "samples/hamilton_clip.mp4", "cam-2", "cam-1"):
        add_picture_summary(client, keys, name, b"\xff\xd8\xff")
    ran = run(redis_url, "--source", "hamilton_clip.mp4")
    assert ran.exit_code == 0, ran.output
    assert ran.stdout == ""
    assert "no summaries yet" not in ran.stderr
    assert ("tracks: none of the 4 summaries in t:summaries is of source 'hamilton_clip.mp4'; their sources: "
            "samples/hamilton_clip.mp4, cam-1, cam-2" in ran.stderr), ran.stderr


def test_the_source_given_is_printed_alone(redis_url, client, keys):
    for name in ("cam-1", "cam-2"):
        add_picture_summary(client, keys, name, b"\xff\xd8\xff")
    ran = run(redis_url, "--source", "cam-2", "--json")
    assert ran.exit_code == 0 and ran.stderr == "", ran.output
    assert len(ran.stdout.splitlines()) == 1 and '"source": "cam-2"' in ran.stdout and "cam-1" not in ran.stdout


def test_an_empty_stream_still_says_no_summaries_yet(redis_url, client, keys):
    ran = run(redis_url, "--source", "cam-1")
    assert ran.exit_code == 0
    assert "tracks: no summaries yet" in ran.stderr, ran.stderr


# --- `moodstream results --source`: the same, on the results stream ------------------------------

def add_results(client, keys, *sources: str) -> None:
    from moodstream.shared.record import FrameResult
    from moodstream.shared.wire import FIELD, encode_result

    for i, name in enumerate(sources):
        client.xadd(keys.results, {FIELD: encode_result(FrameResult(job_id=f"j{i}", source=name, frame=i))})


def results_run(redis_url, *args):
    from moodstream.producer.cli import results

    return CliRunner().invoke(results, ["--from-start", *args, "--redis-url", redis_url, "--prefix", "t"])


def test_results_for_a_source_the_stream_holds_none_of_names_those_it_holds(redis_url, client, keys):
    add_results(client, keys, "cam-1", "samples/hamilton_clip.mp4", "samples/hamilton_clip.mp4")
    ran = results_run(redis_url, "--source", "hamilton_clip.mp4")
    assert ran.exit_code == 0 and ran.stdout == "", ran.output
    assert ("results: none of the 3 results in t:results is of source 'hamilton_clip.mp4'; their sources: "
            "samples/hamilton_clip.mp4, cam-1" in ran.stderr), ran.stderr


def test_results_of_an_empty_stream_say_so(redis_url, client, keys):
    ran = results_run(redis_url)
    assert ran.exit_code == 0 and ran.stdout == ""
    assert "results: no results in t:results" in ran.stderr, ran.stderr


def test_results_printed_say_nothing_more(redis_url, client, keys):
    add_results(client, keys, "cam-1", "cam-2")
    ran = results_run(redis_url, "--source", "cam-2")
    assert ran.exit_code == 0 and ran.stderr == "", ran.output
    assert len(ran.stdout.splitlines()) == 1
