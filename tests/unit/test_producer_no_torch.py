"""Producers run where torch is not installed: importing their side must not import it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("modules", [
    "moodstream.producer",
    "moodstream.producer.cli",
    "moodstream.producer.client, moodstream.producer.results, moodstream.producer.rq_jobs",
    "moodstream.shared.wire, moodstream.shared.keys, moodstream.shared.transport",
])
def test_import_does_not_pull_torch(modules):
    code = f"import sys, {modules}; assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_produce_help_does_not_pull_torch():
    code = ("import sys; from click.testing import CliRunner; from moodstream.cli import cli; "
            "r = CliRunner().invoke(cli, ['produce', '--help']); assert r.exit_code == 0, r.output; "
            "r = CliRunner().invoke(cli, ['results', '--help']); assert r.exit_code == 0, r.output; "
            "assert 'torch' not in sys.modules")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
