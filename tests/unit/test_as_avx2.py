"""deploy/cpu/as_avx2.py: moodstream run as if the CPU had AVX2 and FMA only (a stand-in for an
AVX2-only EPYC on a newer CPU, issue 26)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_cpu_reads_as_avx2_only_and_onednn_is_capped():
    probe = ("import importlib.util, json, os; spec = importlib.util.spec_from_file_location('as_avx2', "
             "'deploy/cpu/as_avx2.py'); as_avx2 = importlib.util.module_from_spec(spec); "
             "spec.loader.exec_module(as_avx2); as_avx2.patch(); "
             "from moodstream.worker import runtime; from moodstream.trainer.bench import throughput; "
             "cpu = runtime.cpu_info(); print(json.dumps({'model': cpu.model, 'isa': cpu.isa(), "
             "'same': throughput.cpu_info is runtime.cpu_info, 'onednn': os.environ['ONEDNN_MAX_CPU_ISA'], "
             "'aten': os.environ['ATEN_CPU_CAPABILITY']}))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home())})
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["model"].endswith(" (as AVX2)") and got["same"]
    assert not any(got["isa"][k] for k in ("avx512", "vnni", "avx512_bf16", "amx"))
    assert (got["onednn"], got["aten"]) == ("AVX2", "avx2")


def test_it_runs_the_cli():
    out = subprocess.run([sys.executable, "deploy/cpu/as_avx2.py", "bench", "throughput", "--help"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Usage: moodstream bench throughput" in out.stdout


def test_its_own_help_says_what_it_does():
    for args in (["--help"], ["-h"], []):
        out = subprocess.run([sys.executable, "deploy/cpu/as_avx2.py", *args], cwd=REPO, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == (0 if args else 2), out.stderr
        text = out.stdout + out.stderr
        assert "as if the CPU had AVX2 and FMA only" in text and "ONEDNN_MAX_CPU_ISA" in text, text
        assert "(as AVX2)" in text and "Usage: moodstream" in text  # then moodstream's own commands
