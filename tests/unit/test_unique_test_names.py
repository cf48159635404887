"""The layout of tests/ (tests/README.md). pytest imports test files by basename (the test folders
are not packages): two files with the same name in different folders stop the whole run at
collection. Helpers are imported as ``tests.support.<module>``, never through ``sys.path``."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_test_modules_have_unique_basenames():
    names = Counter(p.name for p in TESTS.rglob("*.py") if p.name != "conftest.py" and p.name != "__init__.py")
    assert [n for n, c in names.items() if c > 1] == []


def test_no_test_file_changes_sys_path():
    hits = [f"{p.relative_to(TESTS)}:{n}" for p in TESTS.rglob("*.py") if p != Path(__file__).resolve()
            for n, line in enumerate(p.read_text().splitlines(), 1) if re.search(r"sys\.path\.(insert|append)|sys\.path\s*[+=]", line)]
    assert hits == []


def test_helpers_live_in_tests_support_and_test_folders_are_kinds():
    folders = sorted(p.name for p in TESTS.iterdir() if p.is_dir() and p.name not in ("__pycache__", "fixtures"))
    assert folders == ["browser", "chaos", "install", "integration", "support", "unit"]
    assert all(p.name.startswith("test_") for p in TESTS.rglob("*.py")
               if p.parent.name != "support" and p.name not in ("conftest.py", "measure.py"))
