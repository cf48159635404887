import numpy as np
import pytest

from moodstream.trainer.metrics import classification_report, confusion_matrix, format_report


def test_confusion_matrix_counts():
    cm = confusion_matrix([0, 0, 1, 2], [0, 1, 1, 0], n=3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]


def test_report_against_hand_computed_values():
    # class 0: tp 2, fp 1, fn 1 -> p 2/3, r 2/3; class 1: tp 1, fp 1, fn 0 -> p 1/2, r 1;
    # class 4: tp 0, fp 0, fn 1 -> p 0, r 0; other classes absent from y_true.
    y_true = np.array([0, 0, 0, 1, 4])
    y_pred = np.array([0, 0, 1, 1, 0])
    r = classification_report(y_true, y_pred)
    assert r["n"] == 5
    assert r["accuracy"] == pytest.approx(3 / 5)
    assert r["per_class"]["anger"]["precision"] == pytest.approx(2 / 3)
    assert r["per_class"]["anger"]["recall"] == pytest.approx(2 / 3)
    assert r["per_class"]["contempt"]["precision"] == pytest.approx(1 / 2)
    assert r["per_class"]["contempt"]["f1"] == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert r["per_class"]["happiness"]["support"] == 1
    # macro over the three classes present in y_true
    assert r["macro_precision"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert r["macro_recall"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert r["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    assert r["per_class"]["fear"]["support"] == 0
    assert sum(map(sum, r["confusion_matrix"])) == 5
    assert "accuracy 0.6000 on 5 images" in format_report(r)


def test_perfect_predictions():
    y = np.arange(8).repeat(3)
    r = classification_report(y, y)
    assert r["accuracy"] == r["macro_precision"] == r["macro_recall"] == r["macro_f1"] == 1.0
