"""Detection metrics of one ranking against the truth: AP, AUROC and per-class recall in the top 2k."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score


def top_mask(score: np.ndarray, n: int) -> np.ndarray:
    """Boolean mask of the ``n`` highest scores (ties broken by position, stable)."""
    top = np.zeros(len(score), bool)
    top[np.argsort(-np.asarray(score, float), kind="stable")[:n]] = True
    return top


def recall_in_top(score: np.ndarray, cls: np.ndarray, factor: int = 2) -> dict[str, float]:
    """Per anomaly class, the fraction of its frames within the top ``factor * k`` (k = anomalies)."""
    cls = np.asarray(cls)
    odd = cls != "normal"
    top = top_mask(score, factor * int(odd.sum()))
    return {c: float(top[cls == c].mean()) for c in sorted(set(cls[odd]))}


def evaluate(score: np.ndarray, cls: np.ndarray) -> dict:
    """AP, AUROC, k and the per-class recall within the top 2k; ``cls`` is 'normal' or the class."""
    y = (np.asarray(cls) != "normal").astype(int)
    return {"ap": float(average_precision_score(y, score)), "auroc": float(roc_auc_score(y, score)),
            "k": int(y.sum()), "n": len(y), "recall": recall_in_top(score, cls)}
