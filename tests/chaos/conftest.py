"""The chaos suite (issue 12): real redis-server, real worker processes, a generated
poison corpus. Fixtures come from tests/conftest.py; the helpers (streamkit, doubles,
procs, corpus, expanderkit) are in tests/support."""

from __future__ import annotations


def pytest_sessionfinish(session, exitstatus):
    from tests.support.procs import write_report

    write_report()
