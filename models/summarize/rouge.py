"""ROUGE-1/2/L F-measures (Google's rouge-score, a reimplementation of ROUGE-1.5.5, with Porter
stemming), averaged over documents."""
from __future__ import annotations

import numpy as np

KINDS = ("rouge1", "rouge2", "rougeL")


def rouge(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Mean F-measure of each ROUGE kind over the pairs."""
    from rouge_score import rouge_scorer

    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    scorer = rouge_scorer.RougeScorer(list(KINDS), use_stemmer=True)
    scores = [scorer.score(ref, pred) for pred, ref in zip(predictions, references)]
    return {k: float(np.mean([s[k].fmeasure for s in scores])) if scores else 0.0 for k in KINDS}
