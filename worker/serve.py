"""``moodstream worker``: serve frame jobs from Redis until SIGTERM."""

from __future__ import annotations

import logging

import click

from moodstream.options import setting_option
from moodstream.shared.settings import MAX_THREADS, Settings

log = logging.getLogger(__name__)


def consumer_name(ctx, param, value: str | None) -> str | None:
    """--consumer as the worker's metrics take it (:func:`worker.metrics.info_refusal`): refused here, a
    usage error before the models load, not a traceback from the metrics once they have."""
    from moodstream.worker.metrics import info_refusal

    if value is not None and (why := info_refusal(value)):
        raise click.BadParameter(f"{value!r} refused: {why} (it names the worker in its "
                                 "metrics, heartbeat and consumer group)", ctx=ctx, param=param)
    return value


def detect_every_frame(settings: Settings, command: str) -> Settings:
    """``settings`` with ``detect_every`` 1, said on stderr when it was not: detect-every-N is
    `analyze`'s alone (the service detects faces on every frame), and MOODSTREAM_DETECT_EVERY set
    for analyze reached `up` (whose summary said it) and `worker` (taken without a word)."""
    if settings.detect_every == 1:
        return settings
    click.echo(f"{command}: detect_every {settings.detect_every} is analyze's alone (`analyze --detect-every`): "
               "the service detects faces on every frame", err=True)
    return settings.replace(detect_every=1)


@click.command()
@setting_option("redis_url")
@setting_option("prefix")
@setting_option("device")
@setting_option("detector")
@setting_option("backend")
@setting_option("precision")
@setting_option("threads", type=click.IntRange(min=0, max=MAX_THREADS))
@setting_option("checkpoint", type=click.Path(dir_okay=False))
@setting_option("batch_max", type=click.IntRange(min=1))
@setting_option("batch_wait_ms", type=click.IntRange(min=0))
@setting_option("reclaim_idle_ms", type=int)  # its floor (1000, above batch_wait_ms): Settings says it
@setting_option("max_deliveries", type=click.IntRange(min=1))
@setting_option("metrics_port", type=click.IntRange(0, 65535))
@setting_option("metrics_host")
@click.option("--consumer", "consumer", callback=consumer_name,
              help="Consumer name in the group (default: <host>-<pid>): printable, at most 128 characters, "
                   "no '@' or '://' (it is a label of the worker's metrics).")
@click.option("--max-frames", type=click.IntRange(min=1), help="Exit after serving this many frames (tests, benchmarks).")
def worker(consumer, max_frames, **flags):
    """Serve frame jobs from Redis: batch, detect, classify, publish results.

    Joins the consumer group on the frames stream (workers scale horizontally:
    start more with the same settings); a thread moves the frame jobs producers
    push to the intake list into that stream, in order. The first SIGTERM/SIGINT finishes the
    batch in hand and exits; a second exits at once (entries in hand are
    reclaimed by another worker).
    """
    from moodstream.options import to_stderr
    from moodstream.shared.transport import check_connection, connect
    from moodstream.worker.pipeline import Pipeline
    from moodstream.worker.service import Worker

    settings = detect_every_frame(Settings.from_env(**flags), "worker")
    if not logging.getLogger().isEnabledFor(logging.INFO):  # the ready line and the figures, without -v
        logging.getLogger("moodstream.worker.service").setLevel(logging.INFO)
    client = connect(settings.redis_url)
    # one line for a bad URL, password, host or db, before the models load; and, once, what it waits for
    # (a worker started before its Redis waited redis_wait_s without a word: it looked hung)
    check_connection(client, settings.redis_url, settings.redis_wait_s, notice=to_stderr)
    pipeline = Pipeline(settings, worker=True)
    w = Worker(settings, pipeline, name=consumer, client=client, max_frames=max_frames, device=str(pipeline.device))
    served = w.run()
    click.echo(f"worker {w.name}: served {served} frame{'s' if served != 1 else ''}", err=True)
