"""A result computed once per test run and shared by its processes (pytest-xdist's `-n 2`):
for the commands on the real FER+ splits that several tests judge (tests/integration/conftest.py).
Each took 15 to 40 s on a 2-core CPU, and two tests ran each of them on the same input."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable
from typing import Any


def once(tmp_path_factory, name: str, compute: Callable[[], Any]) -> Any:
    """``compute()`` (JSON-able) the first time ``name`` is asked for in this run, its saved value
    after that. The processes of one xdist run share the parent of their temporary folders
    (pytest-xdist's documented way): the first takes a lock, computes and saves; another asking
    meanwhile waits for it. One process alone keeps it in a session fixture, as any value."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return compute()
    folder = tmp_path_factory.getbasetemp().parent
    path = folder / f"{name}.json"
    with open(folder / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if path.is_file():
            return json.loads(path.read_text())
        value = compute()
        path.write_text(json.dumps(value))
        return value
