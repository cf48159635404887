"""What the images' source stage holds (no Docker daemon runs here, so the
Dockerfile is read, not built): every part the installed package links to must
be copied, or the link dangles inside the image (issue 23: `up` without paths
found no sample clip because samples/ was never copied)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _source_stage_copies() -> set[str]:
    text = (REPO / "deploy" / "Dockerfile").read_text()
    stage = re.search(r"^FROM \S+ AS source\n(.*?)(?=^FROM )", text, re.S | re.M)
    assert stage, "deploy/Dockerfile has no 'AS source' stage"
    copied: set[str] = set()
    for line in stage.group(1).splitlines():
        parts = line.split()
        if parts[:1] == ["COPY"] and not any(p.startswith("--from") for p in parts):
            copied.update(p.rstrip("/") for p in parts[1:-1])
    return copied


def test_every_linked_part_of_the_package_is_copied():
    copied = _source_stage_copies()
    links = {p.name: p for p in (REPO / "moodstream").iterdir() if p.is_symlink()}
    assert links, "moodstream/ should link its parts (worker, producer, ...)"
    for name, link in sorted(links.items()):
        target = (link.parent / link.readlink()).resolve().relative_to(REPO).as_posix()
        assert target in copied, f"moodstream/{name} -> {target} is not copied into the source stage: {sorted(copied)}"


def test_package_files_and_build_metadata_are_copied():
    copied = _source_stage_copies()
    for needed in ("pyproject.toml", "setup.py", "README.md", "moodstream"):  # setup.py: the compiled kernels
        assert needed in copied


def _stage(name: str) -> str:
    text = (REPO / "deploy" / "Dockerfile").read_text()
    stage = re.search(rf"^FROM \S+ AS {name}\n(.*?)(?=^FROM |\Z)", text, re.S | re.M)
    assert stage, f"deploy/Dockerfile has no 'AS {name}' stage"
    return stage.group(1)


def test_the_cpu_worker_image_compiles_the_area_resizes_and_drops_the_compiler():
    # the slim base has no C compiler: without one pip skips worker/detectors/_area.c (optional) and the
    # CPU worker runs its numpy pyramid and crops, 3-4x slower
    install = next((" ".join(run.split()) for run in re.findall(r"^RUN ((?:.*\\\n)*.*)$", _stage("worker-cpu"), re.M)
                    if "pip install" in run), "")
    assert "apt-get install" in install and "gcc" in install, install
    assert install.index("gcc") < install.index("pip install") < install.index("apt-get purge"), install
