"""The alternating A/B loop of this folder's ``*_ab.py`` scripts (imported from beside them):
``rounds`` rounds, each variant once a round in turn, the pipeline's faces asserted the same
in every variant, then ``passes`` timed passes over the clip; prints each round and a summary."""
import statistics
import time


def alternate(pipeline, name: str, clip: list, passes: int, variants: dict, rounds: int = 7) -> None:
    """``variants``: label -> a function that switches the code to that variant (two labels:
    before, then after)."""
    ref, times = None, {label: [] for label in variants}
    for r in range(rounds):
        for label, switch in variants.items():
            switch()
            faces = pipeline.detector.detect(clip)
            ref = ref or faces
            assert faces == ref
            t0 = time.perf_counter()
            for _ in range(passes):
                pipeline.process(clip)
            ms = (time.perf_counter() - t0) * 1e3 / (passes * len(clip))
            times[label].append(ms)
            print(f"{name} round {r + 1} {label:10s} {ms:6.2f} ms a frame", flush=True)
    before, after = variants
    diffs = [a - b for a, b in zip(times[before], times[after])]
    print(f"{name}: median {before} {statistics.median(times[before]):.2f}, {after} "
          f"{statistics.median(times[after]):.2f} ms a frame; {after} faster in {sum(d > 0 for d in diffs)} "
          f"of {rounds} rounds, by {statistics.median(diffs):.2f} ms (median of the rounds' differences)", flush=True)
