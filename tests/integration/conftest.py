"""Integration tests run against a real redis-server: ``redis_url``, ``client``,
``keys`` and ``checkpoint`` come from tests/conftest.py."""
