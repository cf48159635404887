"""Integration fixtures: the emotion checkpoint (loaded once), a client and the keys
for the per-test Redis (``redis_url`` from tests/conftest.py, flushed per test)."""

from __future__ import annotations

import pytest
import redis

from shared.keys import Keys


@pytest.fixture(scope="session")
def checkpoint():
    from shared.models import load_checkpoint

    return load_checkpoint()


@pytest.fixture
def client(redis_url):
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


@pytest.fixture
def keys() -> Keys:
    return Keys("t")  # streamkit.settings_for uses prefix "t"
