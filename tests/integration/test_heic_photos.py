"""An iPhone's HEIC photo end to end: `analyze` finds the faces the same photo as a JPEG gives, and the
service's worker decodes one sent as it is (`produce IMG.HEIC` sends the file's bytes), where before both
gave "unsupported: convert them to JPEG or PNG"."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import moodstream
from moodstream.cli import cli
from moodstream.shared.settings import Settings
from tests.support.streamkit import settings_for, start_worker

pillow_heif = pytest.importorskip("pillow_heif", reason="pillow-heif (the cpu and worker installs' HEIC decoder)")

STREET = Path(moodstream.__file__).resolve().parent / "samples" / "street.jpg"


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    from PIL import Image

    out = io.BytesIO()
    pillow_heif.from_pillow(Image.open(STREET)).save(out, format="HEIF", quality=92)
    path = tmp_path_factory.mktemp("iphone") / "IMG_0001.HEIC"
    path.write_bytes(out.getvalue())
    return path


def test_analyze_finds_the_faces_the_jpeg_has(photo):
    settings = Settings.from_env(env={}, device="cpu")
    (from_heic,) = list(moodstream.analyze(photo, settings))
    (from_jpeg,) = list(moodstream.analyze(STREET, settings))
    assert from_heic.error is None and from_heic.size == (960, 540)
    assert len(from_heic.faces) == len(from_jpeg.faces) >= 3
    result = CliRunner().invoke(cli, ["analyze", str(photo), "--device", "cpu"])
    assert result.exit_code == 0 and json.loads(result.stdout.splitlines()[0])["size"] == [960, 540], result.output


def test_the_service_decodes_one_sent_as_it_is(redis_url, checkpoint, photo):
    from moodstream.producer.client import Producer
    from moodstream.producer.results import FROM_START, ResultReader

    settings = settings_for(redis_url)
    refs = list(Producer(settings).produce([str(photo)]))
    assert len(refs) == 1
    w = start_worker(settings, checkpoint, "w-heic")
    try:
        (got,) = list(ResultReader(settings).read(start=FROM_START, count=1, timeout_s=60))
    finally:
        w.stop()
    assert got.error is None and got.size == (960, 540), got.error
