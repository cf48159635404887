"""The chaos suite (issue 12): real redis-server, real worker processes, a generated
poison corpus. Fixtures come from tests/conftest.py; the helpers of the
integration tests (streamkit, doubles) are shared from tests/integration."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))


def pytest_sessionfinish(session, exitstatus):
    from procs import write_report

    write_report()
