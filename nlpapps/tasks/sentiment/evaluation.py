"""Sentiment's test metrics, per group (all texts, then each domain): accuracy and macro-F1 of the
polarity, MAE and Pearson r of the score, beside three baselines on the same rows: the VADER
lexicon (vaderSentiment's compound score), the majority class and the training mean score."""

import numpy as np

from nlpapps import evaluation
from nlpapps.tasks.sentiment import lexicon
from nlpapps.tasks.sentiment.labels import polarity
from nlpapps.tasks.text import fit

PREDICTORS = ("model", "vader", "majority")


def test_rows(model, data, labels, splits=("test",), targets=None):
    """One row of metrics per group of the rows of `splits` that `targets` keeps (by default
    `labels.targets_fn()`: all), accumulated batch by batch."""
    groups, targets = {}, targets or labels.targets_fn()
    batches = (batch for split in splits for batch in fit.predictions(model, data, targets, split, texts=True))
    for out, y, extras in batches:
        true_score, predicted, scores = _predicted(labels, out, y, extras["text"])
        chosen = [("all", slice(None))]
        if "domain" in extras:
            chosen += [(g, extras["domain"] == g) for g in np.unique(extras["domain"])]
        for group, sel in chosen:
            g = groups.setdefault(group, _Group(len(labels.classes)))
            g.add(
                y["polarity"][sel],
                {k: v[sel] for k, v in predicted.items()},
                true_score[sel],
                {k: v[sel] for k, v in scores.items()},
                labels.mean_score,
            )
    rows = [groups["all"].row("all", labels.classes)]
    return rows + [groups[k].row(k, labels.classes) for k in sorted(groups) if k != "all"]


def _predicted(labels, out, y, texts):
    """(true scores, {predictor: class index}, {predictor: score}) of one batch. The label users see
    is the predicted score's band (a band training never saw is index K: always wrong); label-only
    data's score is the probability of the positive (last) class. VADER's compound score (-1 … 1)
    is read on the data's scale; for label-only data it picks the last class when positive."""
    classes, scale, n = labels.classes, labels.scale, len(y["polarity"])
    vader = lexicon.compound(texts)

    def index(bands):
        return np.array([classes.index(b) if b in classes else len(classes) for b in bands], dtype=int)

    if labels.scored:
        true_score, model_score = y["score"][:, 0] * scale, out["score"][:, 0] * scale
        predicted = {
            "model": index(polarity(model_score, labels.band)),
            "vader": index(polarity(vader * scale, labels.band)),
        }
    else:
        true_score = (y["polarity"] == len(classes) - 1).astype(float)
        model_score = out["polarity"][:, -1]
        predicted = {"model": out["polarity"].argmax(-1), "vader": np.where(vader > 0, len(classes) - 1, 0)}
    predicted["majority"] = np.full(n, classes.index(max(classes, key=lambda c: labels.train_counts[c])))
    return true_score, predicted, {"model": model_score, "vader": vader}


class _Group:
    """One group's test metrics, accumulated batch by batch: a confusion matrix per predictor, and
    running sums for the scores' MAE and r."""

    def __init__(self, n_classes):
        # one more row and column: a band training never saw (true or predicted)
        self.matrices = {k: np.zeros((n_classes + 1, n_classes + 1), dtype=np.int64) for k in PREDICTORS}
        self.moments = {k: evaluation.Moments() for k in ("model", "vader")}
        self.mean_error, self.n = 0.0, 0

    def add(self, y, predicted, true_score, scores, mean_score):
        y = np.where(y < 0, len(self.matrices["model"]) - 1, y)  # rated exactly 0: the extra row
        for k, matrix in self.matrices.items():
            np.add.at(matrix, (y, predicted[k]), 1)
        for k, moments in self.moments.items():
            moments.add(true_score, scores[k])
        self.mean_error += float(np.abs(np.asarray(true_score, float) - mean_score).sum())
        self.n += len(y)

    def row(self, group, classes):
        c, v, b = (evaluation.confusion_scores(self.matrices[k], [*classes, None], classes) for k in PREDICTORS)
        r, vader = self.moments["model"].result(), self.moments["vader"].result()
        return {
            "group": group,
            "texts": self.n,
            "accuracy": c["accuracy"],
            "macro_f1": c["macro_f1"],
            "score_mae": r["mae"],
            "score_r": r["pearson"],
            "vader_accuracy": v["accuracy"],
            "vader_r": vader["pearson"],
            "majority_accuracy": b["accuracy"],
            "majority_f1": b["macro_f1"],
            "mean_score_mae": self.mean_error / max(self.n, 1),
        }
