"""The two compiled parts: the CPU MTCNN's area resizes, PNet's rerun windows and threshold
scans, and NMS (worker/detectors/_area.c), several times faster than the numpy code that runs
where it is not built; and the MTCNN nets' first layers for AVX2 CPUs (worker/detectors/_first.c).
Optional: without a C compiler the install still succeeds (pip prints the build error) and
moodstream runs its numpy code (OpenVINO the first layers), the same values, slower;
`moodstream bench profile` and `bench throughput` say which ran. Everything else about the
package is in pyproject.toml."""

from setuptools import Extension, setup

setup(ext_modules=[
    Extension(
        "moodstream.worker.detectors._area", ["worker/detectors/_area.c"], optional=True,
        # each float32 step rounds as numpy's does: no fast-math, no fused multiply-add
        extra_compile_args=["-O3", "-ffp-contract=off", "-fno-fast-math"],
    ),
    # the MTCNN nets' first convolution, PReLU and pool for AVX2 + FMA CPUs (chosen at run time, in the
    # code: the module builds on any compiler, and says whether this CPU can run it)
    Extension(
        "moodstream.worker.detectors._first", ["worker/detectors/_first.c"], optional=True,
        extra_compile_args=["-O3", "-fno-fast-math"],
    ),
])
