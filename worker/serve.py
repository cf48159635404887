"""``moodstream worker``: serve frame jobs from Redis until SIGTERM."""

from __future__ import annotations

import logging

import click

from shared.settings import Settings

log = logging.getLogger(__name__)


@click.command()
@click.option("--redis-url", help="Redis to serve (default: $MOODSTREAM_REDIS_URL). rediss:// and passwords work.")
@click.option("--prefix", help="Key prefix (default: $MOODSTREAM_PREFIX or 'moodstream').")
@click.option("--device", help="auto, cpu, cuda or cuda:N (default: auto).")
@click.option("--detector", type=click.Choice(["mtcnn", "haar"]), help="Face detector (default: mtcnn).")
@click.option("--checkpoint", type=click.Path(dir_okay=False), help="Emotion checkpoint (default: the shipped one).")
@click.option("--batch-max", type=click.IntRange(min=1), help="Frames per batch at most (default: 16).")
@click.option("--batch-wait-ms", type=click.IntRange(min=0),
              help="A batch goes when full or when its oldest frame has waited this long (default: 20).")
@click.option("--reclaim-idle-ms", type=click.IntRange(min=0),
              help="Reclaim other workers' entries pending longer than this (default: 30000).")
@click.option("--max-deliveries", type=click.IntRange(min=1), help="Dead-letter entries delivered more often.")
@click.option("--consumer", "consumer", help="Consumer name in the group (default: <host>-<pid>).")
@click.option("--max-frames", type=click.IntRange(min=1), help="Exit after serving this many frames (tests, benchmarks).")
@click.option("--metrics-port", type=click.IntRange(0, 65535),
              help="Serve Prometheus /metrics, /healthz and /readyz on this port (default: "
                   "$MOODSTREAM_METRICS_PORT; off when unset).")
def worker(redis_url, prefix, device, detector, checkpoint, batch_max, batch_wait_ms, reclaim_idle_ms,
           max_deliveries, consumer, max_frames, metrics_port):
    """Serve frame jobs from Redis: batch, detect, classify, publish results.

    Joins the consumer group on the frames stream (workers scale horizontally:
    start more with the same settings). The first SIGTERM/SIGINT finishes the
    batch in hand and exits; a second exits at once (entries in hand are
    reclaimed by another worker).
    """
    from shared.transport import check_connection, connect
    from worker.pipeline import Pipeline
    from worker.service import Worker

    settings = Settings.from_env(redis_url=redis_url, prefix=prefix, device=device, detector=detector,
                                 checkpoint=checkpoint, batch_max=batch_max, batch_wait_ms=batch_wait_ms,
                                 reclaim_idle_ms=reclaim_idle_ms, max_deliveries=max_deliveries,
                                 metrics_port=metrics_port)
    if not logging.getLogger().isEnabledFor(logging.INFO):  # the ready line and the figures, without -v
        logging.getLogger("worker.service").setLevel(logging.INFO)
    client = connect(settings.redis_url)
    check_connection(client, settings.redis_url)  # one line for a bad URL, password, host or db, before the models load
    pipeline = Pipeline(settings)
    w = Worker(settings, pipeline, name=consumer, client=client, max_frames=max_frames, device=str(pipeline.device))
    served = w.run()
    click.echo(f"worker {w.name}: served {served} frames", err=True)
