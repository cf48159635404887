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
    for needed in ("pyproject.toml", "README.md", "moodstream"):
        assert needed in copied
