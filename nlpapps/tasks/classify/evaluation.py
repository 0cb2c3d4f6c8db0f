"""Classify's test metrics: a confusion matrix accumulated batch by batch, accuracy and macro-F1
beside the majority-class baseline, per-class scores, and the confusion figure."""

from dataclasses import dataclass

import numpy as np

from nlpapps import evaluation
from nlpapps.tasks.text import fit


@dataclass
class TestScores:
    """The test split's `matrix` (rows: true class), the model's `scores`, the `summary` rows
    (model, majority class) and the `scored` classes (in the test split or predicted)."""

    classes: list
    matrix: np.ndarray
    scores: dict
    summary: list
    scored: set

    def per_class(self):
        return [{"class": k, **v} for k, v in self.scores["per_class"].items()]

    def confusion_figure(self):
        """(file name, writer) of the confusion matrix over the scored classes."""
        shown = [i for i, c in enumerate(self.classes) if c in self.scored]
        names = [self.classes[i] for i in shown]
        part = self.matrix[np.ix_(shown, shown)]
        return "confusion_matrix.png", lambda p: evaluation.plot_confusion(None, None, names, p, matrix=part)


def test_scores(model, data, targets, classes, majority):
    matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for out, y, _ in fit.predictions(model, data, targets):
        np.add.at(matrix, (y, out["probabilities"].argmax(-1)), 1)
    baseline = np.zeros_like(matrix)
    baseline[:, classes.index(majority)] = matrix.sum(axis=1)
    # Scored over the classes the test split holds or the model predicts: one never seen in either
    # has no precision or recall to average into macro-F1.
    scored = {c for i, c in enumerate(classes) if matrix[i].sum() or matrix[:, i].sum()}
    scores = evaluation.confusion_scores(matrix, classes, scored)
    summary = [
        {"predictor": name, "texts": int(matrix.sum()), **{k: c[k] for k in ("accuracy", "macro_f1")}}
        for name, c in (("model", scores), ("majority class", evaluation.confusion_scores(baseline, classes, scored)))
    ]
    return TestScores(classes, matrix, scores, summary, scored)
