"""Settings that reach their commands (issue 23 item 5): every --redis-url / --prefix comes
from the option factory (status and track declared theirs by hand), the track stage's
reorder wait and the tracker's parameters are settings, `produce`'s frame encoding is one
(MOODSTREAM_ENCODING), and precision has a flag on analyze / worker / up."""

from __future__ import annotations

import click
import pytest
import redis
from click.testing import CliRunner

from moodstream.cli import COMMANDS, cli
from moodstream.worker.tracking.stage import TrackStage
from moodstream.shared.errors import ConfigError
from moodstream.shared.formats import sniff_format
from moodstream.shared.settings import Settings
from moodstream.shared.wire import decode_frame
from moodstream.worker.tracking.tracker import TrackerConfig

CLIP = "tests/fixtures/clip_360p.mp4"


def command(name: str) -> click.Command:
    ctx = cli.make_context("moodstream", [name, "--help"], resilient_parsing=True)
    return cli.get_command(ctx, name)


def option(cmd: click.Command, name: str) -> click.Option | None:
    return next((p for p in cmd.params if isinstance(p, click.Option) and p.name == name), None)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_redis_url_and_prefix_come_from_the_option_factory(name):
    cmd = command(name)
    for setting in ("redis_url", "prefix"):
        opt = option(cmd, setting)
        if opt is not None:  # the factory's help names the variable and the default; default None
            assert f"[env MOODSTREAM_{setting.upper()}; default" in opt.help and opt.default is None, (name, opt.help)


@pytest.mark.parametrize("name", ["analyze", "worker", "up"])
def test_precision_has_a_flag(name):
    opt = option(command(name), "precision")
    assert opt is not None and "[env MOODSTREAM_PRECISION; default 'auto']" in opt.help
    assert list(opt.type.choices) == ["auto", "fp32", "bf16"]


def test_track_has_the_tracking_settings_as_flags():
    cmd = command("track")
    for setting in ("reorder_wait_ms", "track_iou_min", "track_max_missed", "track_max_missed_s",
                    "track_smoothing_tau_s", "redis_url", "prefix"):
        opt = option(cmd, setting)
        assert opt is not None and f"[env MOODSTREAM_{setting.upper()};" in opt.help, setting


def test_tracking_settings_reach_the_track_stage():
    settings = Settings.from_env(env={"MOODSTREAM_REORDER_WAIT_MS": "300", "MOODSTREAM_TRACK_IOU_MIN": "0.5",
                                      "MOODSTREAM_TRACK_MAX_MISSED": "9", "MOODSTREAM_TRACK_MAX_MISSED_S": "2.5",
                                      "MOODSTREAM_TRACK_SMOOTHING_TAU_S": "0.75"})
    stage = TrackStage(settings, redis.Redis(), pictures=False)  # builds nothing on the connection
    assert stage.wait_s == 0.3
    cfg = stage.tracker_config
    assert (cfg.iou_min, cfg.max_missed, cfg.max_missed_s, cfg.smoothing_tau_s) == (0.5, 9, 2.5, 0.75)
    assert TrackStage(settings, redis.Redis(), pictures=False, reorder_wait_ms=50).wait_s == 0.05  # an argument wins


def test_tracking_defaults_are_the_trackers():
    assert TrackerConfig.from_settings(Settings.from_env(env={})) == TrackerConfig()
    assert Settings.from_env(env={}).reorder_wait_ms == 2000


@pytest.mark.parametrize("env", [{"MOODSTREAM_TRACK_IOU_MIN": "0"}, {"MOODSTREAM_TRACK_SMOOTHING_TAU_S": "0"},
                                 {"MOODSTREAM_REORDER_WAIT_MS": "-1"}, {"MOODSTREAM_ENCODING": "gif"}])
def test_bad_tracking_and_encoding_settings_are_config_errors(env):
    with pytest.raises(ConfigError):
        Settings.from_env(env=env)


@pytest.mark.parametrize("env,flags,expect", [({"MOODSTREAM_ENCODING": "jpeg"}, [], "jpeg"),
                                              ({"MOODSTREAM_ENCODING": "jpeg"}, ["--encode", "webp"], "webp"),
                                              ({}, [], "png")])
def test_produce_encodes_frames_as_the_setting_says(redis_url, client, keys, monkeypatch, env, flags, expect):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    res = CliRunner().invoke(cli, ["produce", CLIP, "--max-frames", "1", "--redis-url", redis_url,
                                   "--prefix", keys.prefix, *flags])
    assert res.exit_code == 0, res.output
    [message] = client.lrange(keys.intake, 0, -1)  # pushed to the intake list, for a worker's mover
    job = decode_frame(message)
    assert sniff_format(job.image) == expect


def test_a_library_producer_sends_the_settings_encoding():
    # Producer(settings) kept its own png default: Settings(encoding=...) never reached it
    from moodstream.producer.client import Producer

    s = Settings.from_env({}, redis_url="redis://127.0.0.1:1/0", encoding="jpeg")
    assert Producer(s).encoding == "jpeg"
    assert Producer(s, encoding="webp").encoding == "webp"  # an explicit argument still wins
    assert Producer(Settings.from_env({}, redis_url="redis://127.0.0.1:1/0")).encoding == "png"


def test_a_worker_says_detect_every_is_not_its_setting(redis_url, client, keys, monkeypatch):
    """MOODSTREAM_DETECT_EVERY=5 in a worker's environment (set for analyze, or in the hope of a
    faster fleet) was taken without a word: the service detects faces on every frame, as `up` says."""
    monkeypatch.setenv("MOODSTREAM_DETECT_EVERY", "5")
    common = ["--redis-url", redis_url, "--prefix", keys.prefix]
    assert CliRunner().invoke(cli, ["produce", CLIP, "--max-frames", "1", *common]).exit_code == 0
    ran = CliRunner().invoke(cli, ["worker", "--max-frames", "1", "--device", "cpu", "--threads", "1", *common])
    assert ran.exit_code == 0, ran.output
    assert "detect_every 5 is analyze's alone" in ran.stderr and "served 1 frame\n" in ran.stderr, ran.stderr


def _device_commands() -> list[list[str]]:
    """Every command and subcommand with a --device option, as typed after `moodstream`."""
    found = []
    for name in COMMANDS:
        cmd = command(name)
        subs = [[name, s] for s in cmd.list_commands(click.Context(cmd))] if isinstance(cmd, click.Group) else [[name]]
        for path in subs:
            target = cmd if len(path) == 1 else cmd.get_command(click.Context(cmd), path[1])
            if option(target, "device") is not None:
                found.append(path)
    return found


@pytest.mark.parametrize("value", ["bogus", "cuda:x", "cuda:", "gpu"])
def test_a_bad_device_is_a_usage_error_in_every_command(value):
    """`--device bogus` was click's usage error (exit 2) for train, eval and balance, and a ConfigError,
    exit 1, for analyze, up, worker and every bench (`bench stream` after spawning its worker: two
    error lines); `cuda:x` passed the setting's check (any "cuda:..."), then failed later. Now each
    --device is checked as it is parsed, by one rule: exit 2 with click's line naming the flag."""
    paths = _device_commands()
    assert {"analyze", "up", "worker", "eval", "train"} <= {p[0] for p in paths} and ["bench", "stream"] in paths
    for path in paths:  # each one's option refuses it as click's usage error
        cmd = command(path[0])
        if len(path) > 1:
            cmd = cmd.get_command(click.Context(cmd), path[1])
        with pytest.raises(click.BadParameter):
            option(cmd, "device").process_value(click.Context(cmd), value)
    for args in (["analyze", "samples/street.jpg"], ["worker"], ["up"], ["bench", "stream", "--video", CLIP]):
        ran = CliRunner().invoke(cli, [*args, "--device", value])
        assert ran.exit_code == 2, (args, ran.output)
        assert "Invalid value for '--device'" in ran.output and "Traceback" not in ran.output, (args, ran.output)
    with pytest.raises(ConfigError, match="device must be"):
        Settings(device=value)


@pytest.mark.parametrize("value", ["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
def test_every_device_the_help_names_is_taken(value):
    for path in _device_commands():
        cmd = command(path[0])
        if len(path) > 1:
            cmd = cmd.get_command(click.Context(cmd), path[1])
        if isinstance(option(cmd, "device").type, click.Choice):  # bench profile: cpu only, said in its help
            continue
        assert option(cmd, "device").process_value(click.Context(cmd), value) == value, path
    assert Settings(device=value).device == value
