import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from moodstream.shared.errors import DataError
from moodstream.shared.labels import INDEX
from moodstream.trainer.data import load_labels, load_split, parse_ferplus_row


def row(name="a.png", votes=(0,) * 10):
    return [name, "(0, 0, 48, 48)", *map(str, votes)]


def test_majority_vote_maps_ferplus_columns():
    # columns: neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF
    name, votes = parse_ferplus_row(row(votes=(1, 6, 0, 0, 3, 0, 0, 0, 0, 0)), "x")
    assert name == "a.png"
    assert votes[INDEX["happiness"]] == pytest.approx(0.6)
    assert votes[INDEX["anger"]] == pytest.approx(0.3)
    assert votes[INDEX["neutrality"]] == pytest.approx(0.1)
    assert votes.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("votes", [(0, 0, 0, 0, 0, 0, 0, 0, 6, 4), (2, 0, 0, 0, 0, 0, 0, 0, 0, 8), (0,) * 10])
def test_unknown_nf_or_no_votes_dropped(votes):
    assert parse_ferplus_row(row(votes=votes), "x") is None


@pytest.mark.parametrize("bad, match", [
    (["a.png", "(0,0,48,48)", "1", "2"], "expected 12 columns"),
    (row(votes=("x", 0, 0, 0, 0, 0, 0, 0, 0, 0)), "must be numbers"),
    (row(votes=(-1, 3, 0, 0, 0, 0, 0, 0, 0, 0)), "negative"),
    (row(name=" "), "empty image name"),
    (row(name="../FER2013Train/a.png"), "leaves the split's folder"),
    (row(name="/etc/passwd"), "leaves the split's folder"),
])
def test_bad_rows_name_the_line(bad, match):
    with pytest.raises(DataError, match=f"label.csv:7: .*{match}|{match}"):
        parse_ferplus_row(bad, "label.csv:7")


def test_ferplus_fixture_layout(fixtures_dir):
    test = load_split(fixtures_dir / "ferplus", "test")
    assert test.images.shape[1:] == (48, 48) and test.images.dtype == np.uint8
    assert len(test) == len(test.labels) == len(test.votes) == len(test.paths)
    assert np.allclose(test.votes.sum(1), 1)
    assert (test.labels == test.votes.argmax(1)).mean() > 0.9  # ties aside, label = argmax votes


def test_ferplus_tie_goes_to_first_column(tmp_path, fixtures_dir):
    split = tmp_path / "FER2013Test"
    split.mkdir()
    src = next((fixtures_dir / "ferplus" / "FER2013Test").glob("*.png"))
    shutil.copy(src, split / "t.png")
    # 4 neutral, 4 happiness: neutral comes first in label.csv
    (split / "label.csv").write_text('t.png,"(0, 0, 48, 48)",4,4,0,0,0,0,0,0,2,0\n')
    s = load_split(tmp_path, "test")
    assert s.labels.tolist() == [INDEX["neutrality"]]


def make_folder_dataset(root: Path, classes: dict[str, int], size=40) -> None:
    rng = np.random.default_rng(0)
    for name, count in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            cv2.imwrite(str(root / name / f"{i}.png"), rng.integers(0, 255, (size, size), dtype=np.uint8))


def test_folder_layout_without_splits_is_split_by_file(tmp_path):
    make_folder_dataset(tmp_path, {"happy": 20, "Sad": 10, "anger": 10})
    splits = {s: load_split(tmp_path, s) for s in ("train", "valid", "test")}
    paths = [set(s.paths) for s in splits.values()]
    assert not (paths[0] & paths[1]) and not (paths[0] & paths[2]) and not (paths[1] & paths[2])
    assert sum(len(s) for s in splits.values()) == 40
    assert splits["train"].images.shape[1:] == (48, 48)  # resized on load
    assert set(splits["train"].labels.tolist()) == {INDEX["happiness"], INDEX["sadness"], INDEX["anger"]}
    again = load_split(tmp_path, "valid")
    assert again.paths == splits["valid"].paths  # seeded


def test_folder_layout_with_split_folders(tmp_path):
    make_folder_dataset(tmp_path / "train", {"fear": 3})
    make_folder_dataset(tmp_path / "test", {"fear": 2, "surprise": 1})
    assert len(load_split(tmp_path, "test")) == 3
    with pytest.raises(DataError, match="no valid/"):
        load_split(tmp_path, "valid")


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_split(tmp_path / "nope", "train")


def test_unknown_class_folder_named(tmp_path):
    make_folder_dataset(tmp_path, {"happy": 2, "bored": 2})
    with pytest.raises(DataError, match="bored"):
        load_split(tmp_path, "train")


def test_empty_class_folder_named(tmp_path):
    make_folder_dataset(tmp_path, {"happy": 2})
    (tmp_path / "fear").mkdir()
    with pytest.raises(DataError, match="fear: class folder holds no images"):
        load_split(tmp_path, "train")


def test_corrupt_image_named(tmp_path):
    make_folder_dataset(tmp_path / "train", {"happy": 2})
    (tmp_path / "train" / "happy" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match="broken.png: not a readable image"):
        load_split(tmp_path, "train")


def test_missing_image_in_label_csv_named(tmp_path):
    split = tmp_path / "FER2013Valid"
    split.mkdir()
    (split / "label.csv").write_text('ghost.png,"(0, 0, 48, 48)",9,1,0,0,0,0,0,0,0,0\n')
    with pytest.raises(DataError, match="ghost.png: image file not found"):
        load_split(tmp_path, "valid")


@pytest.mark.parametrize("layout", ["ferplus", "folders", "split-folders"])
def test_load_labels_matches_load_split_without_decoding(tmp_path, fixtures_dir, monkeypatch, layout):
    if layout == "ferplus":
        root = fixtures_dir / "ferplus"
    elif layout == "folders":
        root = tmp_path
        make_folder_dataset(root, {"happy": 12, "fear": 7, "contempt": 5})
    else:
        root = tmp_path
        make_folder_dataset(root / "train", {"disgust": 4, "surprise": 3})
    want = load_split(root, "train").labels

    def no_decode(*a, **k):
        raise AssertionError("load_labels decoded an image")

    monkeypatch.setattr("moodstream.trainer.data.read_gray", no_decode)
    got = load_labels(root, "train")
    assert got.dtype == np.int64 and got.tolist() == want.tolist()
    with pytest.raises(DataError, match="unknown split"):
        load_labels(root, "dev")


def test_a_model_larger_than_48_px_trains_and_evaluates_on_the_images_at_its_size(tmp_path):
    """Every split was loaded at 48 px, whatever the model's input: `train --input-size 128` on a
    folder of 128 px faces trained (and `eval` / `balance` judged it) on 48 px copies blown back up
    to 128, blurred, while the worker crops its faces at 128. Now the data is loaded at the model's
    size where that is larger than 48 (a smaller one still takes 48 px, downsampled with antialiasing)."""
    from moodstream.shared.models import ModelConfig
    from moodstream.trainer.data import data_size
    from moodstream.trainer.presets import TrainConfig
    from moodstream.trainer.train import load_data

    stripes = np.zeros((128, 128), np.uint8)
    stripes[:, ::2] = 255  # detail that 48 px cannot hold
    for split in ("train", "valid", "test"):
        for name in ("happy", "sad"):
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(2):
                cv2.imwrite(str(tmp_path / split / name / f"{i}.png"), stripes)
    splits = load_data(tmp_path, TrainConfig(model=ModelConfig(input_size=128)))
    for split in splits.values():
        assert split.images.shape[1:] == (128, 128)
        assert np.array_equal(split.images[0], stripes)
    assert data_size(32) == 48 and data_size(48) == 48 and data_size(96) == 96
    assert load_data(tmp_path, TrainConfig())["train"].images.shape[1:] == (48, 48)


@pytest.mark.parametrize("vote", ["nan", "inf", "-inf", "1e39"])
def test_a_vote_count_that_is_not_a_finite_number_names_the_line(vote):
    """`nan`, `inf` or a count past float32 (1e39) in label.csv passed the checks: the soft labels
    were NaN, and `train` wrote a model whose weights were all NaN, exit 0."""
    with pytest.raises(DataError, match="label.csv:7: .*finite"):
        parse_ferplus_row(row(votes=(vote, 3, 0, 0, 0, 0, 0, 0, 0, 0)), "label.csv:7")


def test_a_label_csv_saved_with_a_byte_order_mark_is_read(tmp_path, fixtures_dir):
    """Excel's "CSV UTF-8" starts the file with U+FEFF: the first image was "not found" under a name
    holding an invisible character."""
    split = tmp_path / "FER2013Test"
    split.mkdir()
    shutil.copy(next((fixtures_dir / "ferplus" / "FER2013Test").glob("*.png")), split / "t.png")
    (split / "label.csv").write_bytes('\ufefft.png,"(0, 0, 48, 48)",0,9,0,0,0,0,0,0,1,0\n'.encode())
    assert load_split(tmp_path, "test").labels.tolist() == [INDEX["happiness"]]


def test_hidden_files_and_folders_are_left_out_as_analyze_leaves_them_out(tmp_path):
    """A Jupyter `.ipynb_checkpoints/` beside the class folders was an "unknown class folder", and a
    macOS `._0.png` (AppleDouble metadata, copied with the dataset) "not a readable image": the run
    refused. `analyze` and the expander skip hidden names; the trainer now does too."""
    make_folder_dataset(tmp_path, {"happy": 10, "sad": 10})
    (tmp_path / ".ipynb_checkpoints").mkdir()
    (tmp_path / "happy" / "._0.png").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X")
    (tmp_path / "sad" / ".thumbs").mkdir()
    (tmp_path / "sad" / ".thumbs" / "0.png").write_bytes(b"not an image")
    splits = {s: load_split(tmp_path, s) for s in ("train", "valid", "test")}
    assert sum(len(s) for s in splits.values()) == 20
    assert not any("/." in p for s in splits.values() for p in s.paths)


def test_the_folder_split_is_the_same_whatever_the_training_seed(tmp_path):
    """The folder layout's 80/10/10 split followed `train --seed`, while `eval` and `balance` split
    with seed 0: after `train --seed 1`, all 4 of Valid and all 4 of Test here were training images."""
    from moodstream.trainer.presets import TrainConfig
    from moodstream.trainer.train import load_data

    make_folder_dataset(tmp_path, {"happy": 20, "sad": 20})
    trained = set(load_data(tmp_path, TrainConfig(seed=1))["train"].paths)
    for split in ("valid", "test"):
        held_out = set(load_split(tmp_path, split).paths)
        assert held_out and not held_out & trained, split


def test_a_class_folder_that_is_a_broken_link_is_named(tmp_path):
    """`fear -> /mnt/old-disk/fear` after the disk was unmounted: the class was left out without a
    word (a dangling link is no folder), and the model trained on the other emotions."""
    make_folder_dataset(tmp_path, {"happy": 10, "sad": 10})
    (tmp_path / "fear").symlink_to(tmp_path / "gone", target_is_directory=True)
    with pytest.raises(DataError, match="fear: a link to .*gone.*which does not exist"):
        load_split(tmp_path, "train")


def test_every_image_kind_analyze_reads_is_a_training_image_too(tmp_path):
    """A class folder of .pgm / .ppm / .pnm / .pbm / .gif faces (FER-2013 exports, old datasets) was
    "class folder holds no images", and beside PNGs they were left out without a word: the trainer
    kept its own, shorter list of image suffixes than analyze's (shared.media.IMAGE_EXTS)."""
    from PIL import Image

    from moodstream.shared.media import IMAGE_EXTS

    rng = np.random.default_rng(0)
    face = rng.integers(0, 255, (48, 48), dtype=np.uint8)
    kinds = {".pgm": "L", ".ppm": "RGB", ".pnm": "L", ".pbm": "1", ".gif": "L", ".png": "L", ".JPG": "L"}
    assert {k.lower() for k in kinds} <= IMAGE_EXTS
    (tmp_path / "test" / "happy").mkdir(parents=True)
    (tmp_path / "test" / "sad").mkdir(parents=True)
    for i, (suffix, mode) in enumerate(kinds.items()):
        Image.fromarray(face).convert(mode).save(tmp_path / "test" / "happy" / f"{i}{suffix}",
                                                 format="PPM" if suffix == ".pnm" else None)
    Image.fromarray(face).save(tmp_path / "test" / "sad" / "only.pgm")
    split = load_split(tmp_path, "test")
    assert sorted(Path(p).suffix for p in split.paths) == sorted([*kinds, ".pgm"])
    assert split.images.shape == (len(kinds) + 1, 48, 48)
