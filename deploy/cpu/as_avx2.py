"""Run moodstream on this CPU as if it had AVX2 and FMA only (no AVX-512, VNNI, bf16 or AMX): a
stand-in for an AVX2-only CPU (an EPYC Zen 3 or Zen 1, an older Xeon) on a newer one.

    .venv/bin/python deploy/cpu/as_avx2.py bench throughput --videos ../shared/data/videos --device cpu --frames 8 --json

OpenVINO's and torch's oneDNN kernels are capped at AVX2 (``ONEDNN_MAX_CPU_ISA=AVX2``), torch's own
at AVX2 (``ATEN_CPU_CAPABILITY=avx2``), and moodstream's ISA reading
(:func:`worker.runtime.cpu_info`) drops the AVX-512, VNNI and AMX flags, so ``precision=auto`` and
the measured choices (backend, emotion precision, compiled first layers) are made as on an AVX2
CPU; the model name gains " (as AVX2)", so they are kept apart from the CPU's own in the runtime
cache. The compiled modules use AVX2 and FMA whatever the CPU has. ONNX Runtime is not capped (its
MLAS picks its kernels by the CPU's own flags), so where ``backend=auto`` weighs it against OpenVINO
the stand-in favours it (at 2 threads ONNX Runtime measured faster, 55.5 against 57.6 ms on its
probe, at 1 thread OpenVINO; the choice is timed on 1 thread, whatever a process's threads).

What it stands in for, measured (issue 26): on a Zen 4 capped so, the code of 2026-12-03 (d2a59c5)
gave 2.99x / 3.00x facenet-pytorch at 1080p / 360p; a real AVX2-only Zen 3 gave 3.41x / 3.08x
on that code (fastest of nine passes each side) and 3.64x / 3.32x (best of three runs). On the code of
2026-12-07 (a20992c) the stand-in gave 4.19x / 3.99x best of three on a Zen 4, a real Zen 3 5.08x / 4.87x
and 4.12x / 4.47x in two sets, fastest of nine 4.49x / 4.20x (docs/results/cpu/amd-f25-m1/). Clock,
caches and memory are still the newer CPU's: a check between real machines, not a measurement of one.
"""
import os
import sys

os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")  # before OpenVINO or torch loads oneDNN
os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")

DROPPED = {"avx_vnni", "amx_bf16", "amx_tile", "amx_int8"}


def patch() -> None:
    """Make :func:`worker.runtime.cpu_info` (and the benches' copies of it, where the benches are
    installed: they need torch) read AVX2 and FMA only."""
    from moodstream.worker import runtime

    if getattr(runtime.cpu_info, "as_avx2", False):
        return
    real = runtime.cpu_info

    def cpu_info(path="/proc/cpuinfo"):
        cpu = real(path)
        return runtime.CpuInfo(cpu.model + " (as AVX2)",
                               frozenset(f for f in cpu.flags if not f.startswith("avx512") and f not in DROPPED))

    cpu_info.as_avx2 = True
    runtime.cpu_info = cpu_info
    try:
        from moodstream.trainer.bench import profile, throughput
    except ImportError:  # the lean install (no torch): no benches to patch
        return
    throughput.cpu_info = profile.cpu_info = cpu_info


USAGE = """usage: as_avx2.py COMMAND [ARGS]...: any moodstream command, run as if the CPU had AVX2 and FMA only
(oneDNN capped by ONEDNN_MAX_CPU_ISA=AVX2, torch by ATEN_CPU_CAPABILITY=avx2, moodstream reading no
AVX-512, VNNI, bf16 or AMX; its measured choices kept under the CPU's name with " (as AVX2)";
ONNX Runtime not capped). E.g.
  .venv/bin/python deploy/cpu/as_avx2.py bench throughput --videos ../shared/data/videos --device cpu --frames 8 --json
"""


if __name__ == "__main__":
    bare = len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help")
    if bare:  # what this wrapper does, then moodstream's own help
        print(USAGE, file=sys.stdout if len(sys.argv) >= 2 else sys.stderr)
    patch()
    from moodstream.cli import main

    sys.argv[0] = "moodstream"
    main()
