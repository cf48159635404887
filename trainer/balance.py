"""Class-prior adjustment: give rare emotions a fair share of the argmax.

FER+ is skewed: neutrality and happiness are 63% of Train, contempt and disgust
0.6% each, so a model trained on it almost never predicts the rare classes
(recall 0 for both in our CPU model). Post-hoc logit adjustment (Menon et al.,
"Long-tail learning via logit adjustment", ICLR 2021) divides the predicted
probabilities by the training prior raised to ``tau``:

    p_adj ∝ p / prior**tau,   i.e. log p_adj = log p - tau * log prior

``tau = 0`` is the plain model, ``tau = 1`` the balanced-error Bayes rule.
``tau`` is chosen on Valid by macro F1 (which weighs precision and recall of
every class alike), never on Test. The result is stored in the checkpoint as
``class_bias = -tau * log(prior)`` and applied by
:func:`shared.models.predict_proba`, so the worker, ``analyze`` and ``eval``
all use it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moodstream.shared.labels import NUM_CLASSES
from moodstream.trainer.metrics import classification_report

TAUS = tuple(round(t, 2) for t in np.arange(0.0, 1.0001, 0.05))


@dataclass
class BalanceFit:
    tau: float
    prior: np.ndarray  # (8,) training class frequencies
    table: list[dict]  # per tau: valid accuracy, macro recall, macro F1

    @property
    def class_bias(self) -> tuple[float, ...]:
        return tuple(float(b) for b in class_bias(self.prior, self.tau))

    def summary(self) -> dict:
        """What a checkpoint's meta records of the fit."""
        return {"tau": self.tau, "selected_by": "valid macro_f1"}

    def to_dict(self) -> dict:
        return {**self.summary(), "prior": [float(p) for p in self.prior], "class_bias": list(self.class_bias),
                "table": self.table}


def class_prior(labels: np.ndarray, smoothing: float = 1.0) -> np.ndarray:
    """Class frequencies of ``labels`` with add-``smoothing`` counts (no class gets 0)."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=NUM_CLASSES).astype(np.float64)
    counts = counts + smoothing
    return counts / counts.sum()


def class_bias(prior: np.ndarray, tau: float) -> np.ndarray:
    return -tau * np.log(prior)


def adjusted_predictions(probs: np.ndarray, prior: np.ndarray, tau: float) -> np.ndarray:
    """Argmax of ``log p - tau * log prior`` per row of ``probs`` (N, 8)."""
    return (np.log(np.clip(probs, 1e-12, None)) + class_bias(prior, tau)).argmax(1)


def fit_tau(probs: np.ndarray, labels: np.ndarray, prior: np.ndarray, taus: tuple[float, ...] = TAUS) -> BalanceFit:
    """The ``tau`` in ``taus`` with the best macro F1 of ``probs`` against
    ``labels`` (the Valid split); ties go to the smaller ``tau``."""
    table = []
    for tau in taus:
        r = classification_report(labels, adjusted_predictions(probs, prior, tau))
        table.append({"tau": float(tau), "accuracy": r["accuracy"], "macro_recall": r["macro_recall"],
                      "macro_f1": r["macro_f1"]})
    best = max(table, key=lambda row: (row["macro_f1"], -row["tau"]))
    return BalanceFit(tau=best["tau"], prior=np.asarray(prior, dtype=np.float64), table=table)
