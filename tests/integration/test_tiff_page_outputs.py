"""analyze's outputs for a multi-page TIFF's pages: each annotated page is named by its page
(doc.png, doc-page2.png), so a second run into the same folder writes the same files again.
They took the next free name (doc-2.png, ...), which a rerun found taken: every rerun added a
copy of every page after the first, and doc-2.png could be page 2 of doc.tif or doc-2.tif."""

from __future__ import annotations

import cv2
import numpy as np
from click.testing import CliRunner

from moodstream.worker.analyze import analyze_cmd


def run(*args: str):
    result = CliRunner().invoke(analyze_cmd, ["--device", "cpu", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def test_annotated_pages_are_named_by_page_and_a_rerun_writes_the_same_files(tmp_path):
    rng = np.random.default_rng(5)
    src = tmp_path / "in"
    src.mkdir()
    assert cv2.imwritemulti(str(src / "doc.tif"), [rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
                                                    for _ in range(3)])
    assert cv2.imwrite(str(src / "doc-2.tif"), rng.integers(0, 256, (40, 60, 3), dtype=np.uint8))
    out = tmp_path / "out"
    for _ in range(2):
        result = run("--annotate", str(out), str(src))
        assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["doc-2.png", "doc-page2.png", "doc-page3.png", "doc.png"]


def test_a_report_names_a_multi_page_tiff_once(tmp_path):
    """The report's list of inputs it does not show had one identical line a page ("scan.tif: an
    image", 64 times for a 64-page TIFF); now one line for the file, with its pages counted."""
    import json
    import re

    rng = np.random.default_rng(6)
    scan = tmp_path / "scan.tif"
    assert cv2.imwritemulti(str(scan), [rng.integers(0, 256, (40, 60, 3), dtype=np.uint8) for _ in range(3)])
    report = tmp_path / "report.html"
    result = run("--report", str(report), str(scan))
    assert result.exit_code == 0, result.output
    data = json.loads(re.search(r'<script type="application/json" id="report-data">(.*?)</script>', report.read_text(),
                                re.S).group(1))
    assert [(n["source"], n["why"]) for n in data["not_shown"]] == \
        [(str(scan), "an image of 3 pages (the report shows videos)")], data["not_shown"]
