"""worker.runtime: the CPU's flags, the precision rule and ``backend=auto``'s
choice between ONNX Runtime and OpenVINO by measurement (and its cache)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from moodstream.shared import devices
from moodstream.shared.errors import ConfigError
from moodstream.worker import runtime
from moodstream.worker.onnx_session import net_file
from moodstream.worker.runtime import (AUTO_BF16, AUTO_INT8, RERUN_SHARES, CpuInfo, cache_key, choose,
                                       choose_emotion_precision, cpu_info, describe, emotion_cache_key,
                                       emotion_candidates, measure, net_precisions, pick_emotion_precision,
                                       resolve_precision, screened_nets, served_ms)

REPO = Path(__file__).resolve().parents[2]
BOTH = pytest.mark.skipif(not (devices.installed("onnxruntime") and devices.installed("openvino")),
                          reason="needs onnxruntime and openvino (pip install -e '.[dev]')")
OPENVINO = pytest.mark.skipif(not devices.installed("openvino"),
                              reason="needs openvino (pip install -e '.[dev]' or '.[openvino]')")

XEON = CpuInfo("Intel(R) Xeon(R) Platinum 8481C", frozenset(
    "fpu sse4_2 avx avx2 fma avx512f avx512bw avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8".split()))
EPYC = CpuInfo("AMD EPYC", frozenset("fpu sse4_2 avx avx2 fma".split()))
# Zen 4: AVX-512 with BF16 and VNNI, no AMX
GENOA = CpuInfo("AMD EPYC", frozenset("fpu sse4_2 avx avx2 fma avx512f avx512bw avx512_vnni avx512_bf16".split()))


def test_cpu_info_reads_model_and_flags(tmp_path):
    text = ("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R)  Platinum 8481C CPU @ 2.70GHz\n"
            "flags\t\t: fpu avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8\n\n"
            "processor\t: 1\nmodel name\t: something else\nflags\t\t: fpu\n")
    (tmp_path / "cpuinfo").write_text(text)
    cpu = cpu_info(tmp_path / "cpuinfo")
    assert cpu.model == "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz"  # the first processor, spaces squeezed
    assert cpu.isa() == {"avx2": True, "avx512": True, "vnni": True, "avx512_bf16": True, "amx": True}
    assert cpu.native_bf16
    assert cpu.to_dict()["model"] == cpu.model and cpu.to_dict()["amx"] is True
    assert cpu_info(tmp_path / "missing") == CpuInfo("unknown")
    assert not EPYC.native_bf16 and EPYC.isa() == {"avx2": True, "avx512": False, "vnni": False,
                                                    "avx512_bf16": False, "amx": False}


def test_cpu_info_of_this_machine():
    cpu = cpu_info()
    assert cpu.model and set(cpu.isa()) == {"avx2", "avx512", "vnni", "avx512_bf16", "amx"}


def test_precision_rule():
    assert resolve_precision("auto", "openvino", XEON) == "bf16"  # native bf16: auto takes it
    assert resolve_precision("auto", "openvino", EPYC) == "fp32"
    assert resolve_precision("auto", "onnx", XEON) == "fp32"  # ONNX Runtime computes fp32
    assert resolve_precision("auto", "torch", XEON) == "fp32"
    assert resolve_precision("fp32", "openvino", XEON) == "fp32"  # forced full precision
    assert resolve_precision("bf16", "openvino", XEON) == "bf16"
    with pytest.raises(ConfigError, match="native bf16"):
        resolve_precision("bf16", "openvino", EPYC)
    with pytest.raises(ConfigError, match="runs on the openvino backend"):
        resolve_precision("bf16", "onnx", XEON)


def test_net_precisions():
    # auto on native bf16: bf16 only for the nets shown to stay within the parity bounds
    auto = net_precisions("auto", "openvino", XEON)
    assert auto == {"pnet": "fp32", "rnet": "fp32", "onet": "bf16", "emotion": "int8"}
    assert set(AUTO_BF16) == {"onet", "emotion"}
    assert describe(auto) == "pnet+rnet fp32, onet bf16, emotion int8; emotion's close calls in fp32"
    assert describe(net_precisions("auto", "openvino", XEON, "bf16")) == \
        "pnet+rnet fp32, onet+emotion bf16; emotion's close calls in fp32"  # where measured faster
    assert describe({"onet": "bf16", "emotion": "fp32"}) == "onet bf16, emotion fp32"  # fp32: nothing to rerun
    assert set(net_precisions("bf16", "openvino", XEON).values()) == {"bf16"}  # forced: all
    assert describe(net_precisions("bf16", "openvino", XEON)) == "bf16; emotion's close calls in fp32"
    for precision, backend, cpu in (("fp32", "openvino", XEON), ("fp32", "openvino", EPYC), ("auto", "onnx", XEON),
                                    ("auto", "onnx", EPYC)):
        assert net_precisions(precision, backend, cpu) == dict.fromkeys(("pnet", "rnet", "onet", "emotion"), "fp32")


def test_auto_without_native_bf16_runs_the_emotion_net_in_int8_on_openvino_only():
    auto = net_precisions("auto", "openvino", EPYC)
    assert auto == {"pnet": "fp32", "rnet": "fp32", "onet": "fp32", "emotion": "int8"}
    assert AUTO_INT8 == ("emotion",)
    assert describe(auto) == "pnet+rnet+onet fp32, emotion int8; emotion's close calls in fp32"
    # with AMX too, since bf16's rerun margin widened (RERUN_SHARES): int8 reruns fewer faces
    assert net_precisions("auto", "openvino", XEON)["emotion"] == "int8"


def test_auto_with_native_bf16_but_no_amx_runs_the_emotion_net_in_int8():
    # Zen 4: int8 (VNNI) ran the emotion net 1.7x faster than bf16; ONet stays bf16, PNet / RNet screened
    assert GENOA.native_bf16 and not GENOA.amx and XEON.amx and not EPYC.amx
    auto = net_precisions("auto", "openvino", GENOA)
    assert auto == {"pnet": "fp32", "rnet": "fp32", "onet": "bf16", "emotion": "int8"}
    assert screened_nets("auto", "openvino", GENOA) == ("pnet", "rnet")
    assert describe(auto, screened_nets("auto", "openvino", GENOA)) == \
        "pnet+rnet fp32, onet bf16, emotion int8; pnet+rnet screened in bf16; emotion's close calls in fp32"
    assert net_precisions("bf16", "openvino", GENOA)["emotion"] == "bf16"  # forced: every net
    assert net_precisions("fp32", "openvino", GENOA)["emotion"] == "fp32"
    assert net_precisions("auto", "onnx", GENOA)["emotion"] == "fp32"


# Each CPU's emotion net alone (ms a run, OpenVINO, one thread; docs/results): int8 and bf16 must
# also pay for the faces they run again in fp32 (RERUN_SHARES).
MEASURED = {
    "zen1": {"fp32": 191.4, "int8": 184.6},  # 32 crops, cpu/amd-f23-m1/int8_parity.json: int8 1.04x alone
    "zen3": {"fp32": 2.62 * 32, "int8": 1.24 * 32},  # onnx_classify.RUN_CROPS's note
    "zen4": {"fp32": 68.9, "int8": 19.4, "bf16": 33.3},  # 32 crops, int8_parity_zen4.json
    "zen5": {"fp32": 33.0, "int8": 10.3, "bf16": 16.0},  # 32 crops, int8_parity_zen5.json
    "xeon_amx": {"fp32": 35.1, "int8": 5.3, "bf16": 5.9},  # 32 crops, int8_parity_xeon.json
}


@pytest.mark.parametrize("cpu, want", [("zen1", "fp32"), ("zen3", "int8"), ("zen4", "int8"), ("zen5", "int8"),
                                       ("xeon_amx", "int8")])
def test_the_emotion_nets_precision_is_the_fastest_as_served(cpu, want):
    # on a Zen 1 int8 alone is a little faster than fp32, but with its reruns slower: fp32 serves faster;
    # with AMX int8 alone is a little faster than bf16 and, since bf16's margin had to widen (0.05 ->
    # 0.11, onnx_classify.CONFIRM_MARGINS), reruns fewer faces too (14% against 19%): int8 serves faster
    # (until 2026-12-04 bf16 reran 11% to int8's 18%, and served faster)
    assert pick_emotion_precision(MEASURED[cpu]) == want
    assert served_ms(MEASURED["zen1"])["int8"] > MEASURED["zen1"]["fp32"] > MEASURED["zen1"]["int8"]
    assert MEASURED["xeon_amx"]["int8"] < MEASURED["xeon_amx"]["bf16"]
    assert RERUN_SHARES["int8"] < RERUN_SHARES["bf16"]
    tie = {"fp32": 10.0, "int8": 10.0 - RERUN_SHARES["int8"] * 10.0}  # int8's saving all spent on its reruns
    assert pick_emotion_precision(tie) == "fp32"  # a tie: nothing to rerun
    assert emotion_candidates(EPYC) == ("fp32", "int8") and emotion_candidates(XEON) == ("fp32", "int8", "bf16")


def test_the_measured_emotion_precision_overrules_the_usual_one():
    assert net_precisions("auto", "openvino", EPYC, "fp32")["emotion"] == "fp32"
    assert describe(net_precisions("auto", "openvino", EPYC, "fp32")) == "fp32"  # nothing rerun
    assert net_precisions("auto", "openvino", GENOA, "bf16") == {"pnet": "fp32", "rnet": "fp32", "onet": "bf16",
                                                                 "emotion": "bf16"}
    assert net_precisions("fp32", "openvino", EPYC, "int8")["emotion"] == "fp32"  # forced fp32 wins
    with pytest.raises(ConfigError, match="cannot run in bf16"):
        net_precisions("auto", "openvino", EPYC, "bf16")  # no native bf16


@OPENVINO
def test_auto_measures_the_emotion_nets_precision_here_and_keeps_it(tmp_path):
    cache = tmp_path / "runtime.json"
    cpu = cpu_info()
    first = choose_emotion_precision(str(cache), cpu=cpu, budget_s=0.1)
    assert first.how == "measured" and set(first.ms) == set(emotion_candidates(cpu))
    assert all(v > 0 for v in first.ms.values()) and first.served_ms == served_ms(first.ms)
    assert first.precision == pick_emotion_precision(first.ms)
    kept = json.loads(cache.read_text())["choices"][emotion_cache_key(cpu)]
    assert (kept["precision"], kept["ms"]) == (first.precision, first.ms)
    assert choose_emotion_precision(str(cache), cpu=cpu) is first  # once per process
    runtime._emotion_choices.clear()
    again = choose_emotion_precision(str(cache), cpu=cpu)
    assert (again.how, again.precision, again.ms) == ("cached", first.precision, first.ms)  # once per CPU kind


@OPENVINO
@pytest.mark.parametrize("measured", ["fp32", "int8"])
def test_the_pipeline_runs_the_emotion_net_in_the_precision_measured_here(tmp_path, measured):
    """A Zen 1 EPYC ran auto's emotion net in int8, which served its faces more slowly there
    than fp32 (int8 alone 1.04x, 0.86x with its reruns): auto followed a rule, not a measurement."""
    from moodstream.shared.settings import Settings
    from moodstream.worker.pipeline import Pipeline

    cache = tmp_path / "runtime.json"
    key = emotion_cache_key(cpu_info())
    entry = {"precision": measured, "ms": {"fp32": 10.0, "int8": 10.0}}
    cache.write_text(json.dumps({"format": runtime.CACHE_FORMAT, "choices": {key: entry}}))
    runtime._emotion_choices.clear()
    for threads in (1, 2):  # a worker (half the cores) and analyze (all of them) on one machine: one precision
        p = Pipeline(Settings.from_env(env={}, device="cpu", backend="openvino", precision="auto", threads=threads,
                                       runtime_cache=str(cache)))
        assert p.precisions["emotion"] == p.classifier.precision == measured
        assert (p.classifier.confirm is None) == (measured == "fp32")  # fp32 has nothing to run again
        assert p.precision.endswith("emotion's close calls in fp32") == (measured != "fp32")
        runtime._emotion_choices.clear()
    # the emotion net's choice is one per machine, not per thread count: nothing measured again for 2 threads
    assert [k for k in json.loads(cache.read_text())["choices"] if k.startswith("emotion")] == [key]


def test_the_emotion_nets_choice_is_one_per_machine_kind():
    """Measured per thread count, a Zen 1 gave int8 on 2 threads (analyze) and fp32 on 1 (a worker):
    the service's summary of a file then differed from analyze's by 0.002."""
    assert "threads" not in emotion_cache_key(EPYC) and EPYC.model in emotion_cache_key(EPYC)
    assert len({emotion_cache_key(EPYC), emotion_cache_key(XEON), emotion_cache_key(GENOA)}) == 3
    assert runtime.PROBE_THREADS == 1


def test_int8_file_is_openvinos_only(tmp_path):
    assert net_file(tmp_path, "emotion.onnx", "openvino", "int8") == tmp_path / "openvino" / "emotion_int8.onnx"
    with pytest.raises(ConfigError, match="openvino backend only"):
        net_file(tmp_path, "emotion.onnx", "onnx", "int8")
    with pytest.raises(ConfigError, match="openvino backend only"):
        net_file(tmp_path, "mtcnn_pnet.onnx", "openvino", "int8")


def test_screened_nets_only_under_auto_with_native_bf16():
    assert screened_nets("auto", "openvino", XEON) == ("pnet", "rnet")
    for precision, backend, cpu in (("fp32", "openvino", XEON), ("bf16", "openvino", XEON),
                                    ("auto", "openvino", EPYC), ("auto", "onnx", XEON)):
        assert screened_nets(precision, backend, cpu) == ()
    auto = net_precisions("auto", "openvino", XEON)
    assert describe(auto, ("pnet", "rnet")) == \
        "pnet+rnet fp32, onet bf16, emotion int8; pnet+rnet screened in bf16; emotion's close calls in fp32"


def test_cache_key_separates_machine_kinds():
    keys = {cache_key(XEON, "auto"), cache_key(EPYC, "auto"), cache_key(GENOA, "auto"), cache_key(EPYC, "fp32")}
    assert len(keys) == 4
    assert XEON.model in cache_key(XEON, "auto") and "amx" in cache_key(XEON, "auto")
    assert "threads" not in cache_key(EPYC, "auto")  # one choice per machine kind (timed on PROBE_THREADS)


@BOTH
def test_measure_times_both_runtimes():
    fp32 = dict.fromkeys(runtime.NETS, "fp32")
    ms = measure(["onnx", "openvino"], {"onnx": fp32, "openvino": fp32}, threads=1, budget_s=0.2)
    assert set(ms) == {"onnx", "openvino"} and all(v > 0 for v in ms.values())


@BOTH
def test_auto_picks_the_faster_by_measurement_and_keeps_it(tmp_path):
    cache = tmp_path / "sub" / "runtime.json"
    runtime._backend_choices.clear()
    first = choose("auto", str(cache), cpu=EPYC, budget_s=0.2)
    assert first.how == "measured" and set(first.ms) == {"onnx", "openvino"}
    assert first.backend == min(first.ms, key=first.ms.get)  # the faster of the two as measured
    # no native bf16: fp32, or on openvino the emotion net in the precision measured here
    emotion = choose_emotion_precision(str(cache), cpu=EPYC)  # measured by the first choose, and kept
    assert json.loads(cache.read_text())["choices"][emotion_cache_key(EPYC)]["ms"] == emotion.ms
    openvino = describe(net_precisions("auto", "openvino", EPYC, emotion.precision))
    assert first.precision == {"onnx": "fp32", "openvino": openvino}[first.backend]
    kept = json.loads(cache.read_text())
    assert kept["format"] == runtime.CACHE_FORMAT
    assert kept["choices"][cache_key(EPYC, "auto")]["backend"] == first.backend
    assert choose("auto", str(cache), cpu=EPYC) is first  # this process's choice
    runtime._backend_choices.clear()  # another process on this machine kind: the kept choice
    again = choose("auto", str(cache), cpu=EPYC)
    assert (again.how, again.backend, again.ms) == ("cached", first.backend, first.ms)
    # another precision setting is another choice: measured again, both kept
    assert choose("fp32", str(cache), cpu=EPYC, budget_s=0.2).how == "measured"
    assert len([k for k in json.loads(cache.read_text())["choices"] if not k.startswith(("emotion ", "first layers "))]) == 2


@BOTH
def test_analyze_and_a_worker_on_one_machine_run_one_backend(tmp_path, monkeypatch):
    """Measured per thread count, the two runtimes can come out in another order at 1 and 2 threads
    (a Zen 4 capped to AVX2: ONNX Runtime at 2, analyze's default there, OpenVINO at 1, a worker's):
    the service's summary of a file then differed from analyze's by 0.0028. One choice per machine
    kind, whatever a process's threads."""
    from moodstream.shared.settings import Settings
    from moodstream.worker.pipeline import Pipeline

    timed = []

    def close_runtimes(backends, precisions, threads, *args, **kwargs):  # each faster at one thread count
        timed.append(threads)
        return {"onnx": 10.0, "openvino": 11.0} if threads > 1 else {"onnx": 11.0, "openvino": 10.0}

    monkeypatch.setattr(runtime, "measure", close_runtimes)
    monkeypatch.setattr(runtime, "_backend_choices", {})
    cache = tmp_path / "runtime.json"
    backends = {threads: Pipeline(Settings.from_env(env={}, device="cpu", threads=threads,
                                                    runtime_cache=str(cache))).backend for threads in (2, 1)}
    assert backends[1] == backends[2] == "openvino"  # the order at the one thread it is timed on
    assert timed == [runtime.PROBE_THREADS]  # measured once, for both
    assert [k for k in json.loads(cache.read_text())["choices"]
            if not k.startswith(("emotion ", "first layers "))] == [cache_key(cpu_info(), "auto")]


@BOTH
@pytest.mark.parametrize("faster", ["onnx", "openvino"])
def test_auto_follows_what_was_measured(tmp_path, faster):
    # a measurement kept from an earlier start (here: written as that start would have written it)
    cache = tmp_path / "runtime.json"
    slower = {"onnx": "openvino", "openvino": "onnx"}[faster]
    entry = {"backend": faster, "precision": "fp32", "ms": {faster: 10.0, slower: 20.0}}
    cache.write_text(json.dumps({"format": runtime.CACHE_FORMAT, "choices": {cache_key(EPYC, "auto"): entry}}))
    runtime._backend_choices.clear()
    choice = choose("auto", str(cache), cpu=EPYC)
    assert (choice.backend, choice.how) == (faster, "cached")


@BOTH
def test_auto_cache_off(tmp_path):
    runtime._backend_choices.clear()
    assert choose("auto", "off", cpu=EPYC, budget_s=0.1).how == "measured"
    assert list(tmp_path.iterdir()) == []


def _fresh(monkeypatch):
    for memo in ("_backend_choices", "_emotion_choices", "_first_choices", "_warned"):
        monkeypatch.setattr(runtime, memo, type(getattr(runtime, memo))())


def _choose_all(cache: Path) -> None:
    """Every once-per-kind choice, as a pipeline's start makes them."""
    choose("auto", str(cache), cpu=EPYC, budget_s=0.05)
    choose("fp32", str(cache), cpu=EPYC, budget_s=0.05)


FOREIGN = {"notes.txt": b"my notes\nline 2\n", "list.json": b"[1, 2]", "latin1.txt": "caf\xe9".encode("latin-1"),
           "corrupt.json": b"{not json", "deep.json": b"[" * 100_000 + b"]" * 100_000,
           "other.json": b'{"format": "something else", "choices": {}}'}


@BOTH
@pytest.mark.parametrize("name", sorted(FOREIGN))
def test_a_file_that_is_not_a_runtime_cache_is_left_as_it_is(tmp_path, monkeypatch, caplog, name):
    """runtime_cache pointed at a user's own file once replaced it with a cache, silently."""
    _fresh(monkeypatch)
    cache = tmp_path / name
    cache.write_bytes(FOREIGN[name])
    cache.chmod(0o644)
    with caplog.at_level("WARNING", logger="moodstream.worker.runtime"):
        _choose_all(cache)
    assert cache.read_bytes() == FOREIGN[name] and cache.stat().st_mode & 0o777 == 0o644
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "not a moodstream runtime cache" in warnings[0] and str(cache) in warnings[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temporary file left


WRONG_SHAPES = [{"format": "moodstream-runtime-choice/7", "choices": []},
                {"format": "moodstream-runtime-choice/7", "choices": "x"},
                {"format": "moodstream-runtime-choice/7", "choices": None}]


@BOTH
@pytest.mark.parametrize("data", WRONG_SHAPES + ["entries"])
def test_a_cache_of_the_wrong_shape_is_measured_again_and_mended(tmp_path, monkeypatch, data):
    """Valid JSON of the wrong shape raised AttributeError, TypeError or RecursionError at start."""
    _fresh(monkeypatch)
    cache = tmp_path / "runtime.json"
    if data == "entries":  # each entry of the wrong shape
        keys = [cache_key(EPYC, "auto"), cache_key(EPYC, "fp32"), emotion_cache_key(EPYC),
                runtime.first_layers_cache_key(EPYC)]
        bad = [[1], "openvino", {"backend": "onnx", "ms": "fast"}, {"nets": [["pnet"]], "ms": 3}]
        data = {"format": runtime.CACHE_FORMAT, "choices": dict(zip(keys, bad))}
    cache.write_text(json.dumps(data))
    _choose_all(cache)
    choices = json.loads(cache.read_text())["choices"]
    assert {k for k in choices if not k.startswith(("emotion ", "first layers "))} == \
        {cache_key(EPYC, "auto"), cache_key(EPYC, "fp32")}
    assert all(isinstance(v, dict) for v in choices.values())
    for precision in ("auto", "fp32"):
        _fresh(monkeypatch)
        again = choose(precision, str(cache), cpu=EPYC)
        assert again.how == "cached" and isinstance(again.ms, dict)


@BOTH
def test_a_cache_keeps_its_mode_and_a_new_one_follows_the_umask(tmp_path, monkeypatch):
    """The cache was written through a private temporary file and so became 0600: a cache shared
    by a machine's users was then unreadable to all but the last writer."""
    _fresh(monkeypatch)
    shared = tmp_path / "shared.json"
    shared.write_text(json.dumps({"format": runtime.CACHE_FORMAT, "choices": {}}))
    shared.chmod(0o664)
    _choose_all(shared)
    assert shared.stat().st_mode & 0o777 == 0o664 and len(json.loads(shared.read_text())["choices"]) >= 2
    _fresh(monkeypatch)
    old = os.umask(0o027)
    try:
        _choose_all(tmp_path / "new" / "runtime.json")
    finally:
        os.umask(old)
    assert (tmp_path / "new" / "runtime.json").stat().st_mode & 0o777 == 0o640


def test_processes_writing_at_once_keep_every_choice(tmp_path):
    """Each write read the file, added its entry and replaced the file, unlocked: of two processes'
    300 entries each, 413 of 600 were kept. Workers starting together measure and write at once."""
    cache = tmp_path / "runtime.json"
    code = """
import sys
from pathlib import Path
from moodstream.worker import runtime
path, who = Path(sys.argv[1]), sys.argv[2]
ready = Path(sys.argv[1] + ".go")
while not ready.exists():
    pass
for i in range(150):
    runtime._write_cache(path, f"{who} {i}", {"backend": "onnx"})
"""
    procs = [subprocess.Popen([sys.executable, "-c", code, str(cache), who]) for who in "ab"]
    time.sleep(3)  # both started and waiting
    Path(str(cache) + ".go").touch()
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    assert len(json.loads(cache.read_text())["choices"]) == 300


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_a_cache_path_that_is_no_file_is_a_warning(tmp_path, kind):
    """A directory: the failed write left a temporary file beside it at every start, and warned
    twice a start. A FIFO: the start hung, reading it."""
    cache = tmp_path / "cache"
    cache.mkdir() if kind == "directory" else os.mkfifo(cache)
    code = """
import logging, sys
from moodstream.worker import runtime
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
runtime._write_cache(runtime.Path(sys.argv[1]), "a", {"backend": "onnx"})
runtime._write_cache(runtime.Path(sys.argv[1]), "b", {"backend": "onnx"})
print(runtime._read_cache(runtime.Path(sys.argv[1])))
"""
    res = subprocess.run([sys.executable, "-c", code, str(cache)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == "{}", res.stderr
    assert res.stderr.count("WARNING") == 1 and str(cache) in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]


def test_a_choice_kept_in_the_old_format_is_measured_again(tmp_path):
    # format 1 was measured on other files (one form for both runtimes): not trusted any more
    cache = tmp_path / "runtime.json"
    entry = {"backend": "onnx", "precision": "fp32", "ms": {"onnx": 1.0}}
    cache.write_text(json.dumps({"format": "moodstream-runtime-choice/1", "choices": {cache_key(EPYC, "auto"): entry}}))
    assert runtime._read_cache(cache) == {}


def test_forced_bf16_needs_native_bf16():
    if devices.installed("openvino"):
        assert choose("bf16", "off", cpu=XEON).backend == "openvino"  # only OpenVINO computes bf16
    with pytest.raises(ConfigError, match="native bf16"):
        choose("bf16", "off", cpu=EPYC)


def _run_without(module: str, code: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter where ``module`` cannot be imported."""
    return subprocess.run([sys.executable, "-c", f"import sys; sys.modules[{module!r}] = None\n{code}"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_openvino_missing_is_one_line_naming_the_extra(tmp_path):
    code = """
from moodstream.shared.errors import ConfigError
from moodstream.shared.settings import Settings
from moodstream.worker.pipeline import Pipeline
try:
    Pipeline(Settings.from_env(env={}, device="cpu", backend="openvino"))
except ConfigError as exc:
    print("ERROR", exc)
p = Pipeline(Settings.from_env(env={}, device="cpu", runtime_cache="off"))
print("AUTO", p.backend, p.precision)
"""
    res = _run_without("openvino", code)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert lines[0] == "ERROR backend openvino needs openvino: pip install 'moodstream[openvino]'"
    assert lines[1] == "AUTO onnx fp32"  # auto: the one runtime installed, nothing to measure
    # the CLI: one line on stderr, no traceback
    cli = _run_without("openvino", "from moodstream.cli import main\nsys.argv = ['moodstream', 'analyze', "
                                   f"'--device', 'cpu', '--backend', 'openvino', {str(REPO / 'samples/street.jpg')!r}]"
                                   "\nmain()")
    assert cli.returncode != 0
    assert "pip install 'moodstream[openvino]'" in cli.stderr and "Traceback" not in cli.stderr
    assert len(cli.stderr.strip().splitlines()) == 1, cli.stderr
