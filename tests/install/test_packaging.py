"""One installed name: the wheel puts `moodstream` and nothing else at the top of
site-packages, carries what runs need without a checkout (the shipped emotion
weights, the box calibration, the ONNX models, the sample clip `moodstream up`
plays), and every module imports from the installed copy alone."""

import ast
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PARTS = ("shared", "worker", "producer", "trainer")  # the repository's folders, installed as moodstream.<part>


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    try:
        import setuptools  # noqa: F401  (the build backend, used without isolation: no download)
    except ImportError:
        pytest.skip("setuptools is not installed in this environment")
    tmp = tmp_path_factory.mktemp("wheel")
    # build from a clean copy: an in-tree build/ folder would hide files that no longer get packaged
    src = tmp / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "runs", "out", ".whl", "*.egg-info", "tests", "docs", "__pycache__",
        "*.so"))  # an in-place build of the compiled module would hide a broken one
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                           "-q", "-w", str(tmp)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (built,) = tmp.glob("moodstream-*.whl")
    return built


@pytest.mark.slow
def test_sdist_builds_the_same_wheel(wheel, tmp_path):
    """pip falls back to the sdist where no wheel fits: the parts are links in the
    tree, so the sdist must carry their files, and a wheel built from it must hold
    exactly what the wheel built from the tree holds."""
    src = wheel.parent / "src"
    build = f"from setuptools import build_meta as b; b.build_sdist({str(tmp_path)!r})"
    proc = subprocess.run([sys.executable, "-c", build], cwd=src, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sdist,) = tmp_path.glob("moodstream-*.tar.gz")
    out = tmp_path / "from_sdist"
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(sdist), "--no-deps", "--no-build-isolation",
                           "-q", "-w", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (rebuilt,) = out.glob("moodstream-*.whl")
    assert set(zipfile.ZipFile(rebuilt).namelist()) == set(zipfile.ZipFile(wheel).namelist())


@pytest.mark.slow
def test_wheel_ships_weights_calibration_and_samples(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("moodstream/shared/weights/emotion.pt", "moodstream/worker/data/box_calibration.json",
                   "moodstream/worker/data/onnx/mtcnn_pnet.onnx", "moodstream/trainer/bench/iou.py",
                   *(f"moodstream/worker/data/onnx/openvino/mtcnn_{n}.onnx" for n in ("pnet", "rnet", "onet")),
                   "moodstream/samples/hamilton_clip.mp4", "moodstream/samples/ATTRIBUTION.md",
                   "moodstream/worker/tracking/__init__.py", "moodstream/worker/data/report.js",
                   "moodstream/producer/dashboard/static/dashboard.js", "moodstream/producer/dashboard/static/chart.js"):
        assert needed in names, f"{needed} missing from {wheel.name}"
    # the compiled pyramid and crops (setup.py): the wheel is built where a C compiler is, as here
    for module in ("_area", "_first"):  # and the MTCNN nets' first layers
        assert any(n.startswith(f"moodstream/worker/detectors/{module}.") and n.endswith((".so", ".pyd"))
                   for n in names), f"the compiled module {module} is missing from {wheel.name}"
    tops = {n.split("/")[0] for n in names}
    assert tops == {"moodstream", "-".join(wheel.name.split("-")[:2]) + ".dist-info"}, tops


@pytest.mark.slow
def test_fresh_venv_gets_one_top_level_name_and_everything_imports_from_it(wheel, tmp_path):
    """Install the wheel into a new venv (its dependencies come from this environment
    through a .pth line, nothing is downloaded), then import every module of it from a
    folder outside the checkout: an import of a bare `worker` / `shared` ... would fail."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    py = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    before = set(os.listdir(site))
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index",
                           "-q", str(wheel)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    added = set(os.listdir(site)) - before
    assert {a for a in added if not a.endswith(".dist-info")} == {"moodstream"}, added
    # this environment's packages (numpy, cv2, torch, ...), after the venv's own; a plain path
    # line, so the editable checkout's finder (a .pth of its own there) is not loaded
    (site / "zz_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    code = (
        "import importlib, importlib.util, pkgutil, sys\n"
        "import moodstream\n"
        "assert moodstream.__file__.startswith(sys.prefix), moodstream.__file__\n"
        f"for part in {PARTS!r}:\n"
        "    assert importlib.util.find_spec(part) is None, part\n"
        "bad = []\n"
        "for m in pkgutil.walk_packages(moodstream.__path__, 'moodstream.'):\n"
        "    try:\n"
        "        importlib.import_module(m.name)\n"
        "    except Exception as exc:\n"
        "        bad.append(f'{m.name}: {exc!r}')\n"
        "assert not bad, bad\n"
        "from moodstream import Settings, Pipeline, Producer, ResultReader, analyze\n"
        "from moodstream.shared.models import load_checkpoint\n"
        "print(load_checkpoint(None).version)\n"
    )
    run = subprocess.run([str(py), "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": ""})
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip(), "the shipped checkpoint did not load from the installed copy"
    cli = subprocess.run([str(env_dir / "bin" / "moodstream"), "--help"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert cli.returncode == 0 and "analyze" in cli.stdout, cli.stderr


def _py_files():
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in {".venv", ".git", "build", "runs", ".whl"} or \
                (rel.parts[0] == "moodstream" and rel.parts[1] in PARTS):  # the links to the parts
            continue
        yield rel, path


def test_no_module_imports_a_part_by_its_folder_name():
    """`from worker.x import y` runs from the checkout (the repo root is on sys.path)
    but not from the installed wheel: every import says moodstream.<part>."""
    offenders = []
    for rel, path in _py_files():
        for node in ast.walk(ast.parse(path.read_text(), str(rel))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{rel}:{node.lineno}: {n}" for n in names if n.split(".")[0] in PARTS]
    assert not offenders, "\n".join(offenders)
