"""Sentiment (many-to-one): a text's polarity and its intensity score on the data's own scale.

Scored data (the shipped snippets: mean human rating -4..+4) trains two heads, a polarity head and
a score regression; the label a user sees is the score's band (positive above `neutral_band`,
negative below minus it, neutral in between; a score of exactly 0 is neutral), computed from the
score in the export and in evaluation alike, so label and score never disagree. The polarity head
helps training and its probabilities are exported as they are. Label-only data (imdb_reviews:
neg/pos) trains the polarity head alone: the label is its most likely class and the score the
probability of the last (positive) class.
"""

from collections import Counter

import keras
import numpy as np
import tensorflow as tf

from nlpapps import evaluation, training
from nlpapps.data import sources
from nlpapps.errors import UserError
from nlpapps.tasks import many_to_one

NAME = "sentiment"
MAX_CLASSES = 5  # a label column with more distinct values is not a polarity (a score read as labels?)


def polarity(scores, band):
    """positive above `band`, negative below -band, neutral in between (a score of 0 included)."""
    return np.where(scores > band, "positive", np.where(scores < -band, "negative", "neutral"))


def polarity_tf(scores, band):
    """`polarity` in TensorFlow ops, for the export."""
    return tf.where(scores > band, "positive", tf.where(scores < -band, "negative", "neutral"))


def _scores(values):
    """The values as numeric scores; None for class labels (text, or 0/1 as binary datasets use)."""
    try:
        scores = np.asarray(list(values), dtype=float)
    except ValueError:
        return None
    return None if set(np.unique(scores)) <= {0.0, 1.0} else scores


def build(vocab_size, classes, scored, m, t):
    ids, x = many_to_one.encoder(vocab_size, m)
    outputs = {"polarity": keras.layers.Dense(len(classes), activation="softmax", name="polarity")(x)}
    losses, metrics = {"polarity": "sparse_categorical_crossentropy"}, {"polarity": ["accuracy"]}
    if scored:  # tanh keeps the score inside the data's range once scaled back
        outputs["score"] = keras.layers.Dense(1, activation="tanh", name="score")(x)
        losses["score"], metrics["score"] = "mse", ["mae"]
    model = keras.Model(ids, outputs, name="sentiment")
    weights = {"polarity": 1.0, "score": t["score_weight"]} if scored else None
    model.compile(
        optimizer=training.Adam(t["learning_rate"]),
        loss=losses,
        loss_weights=weights,
        metrics=metrics,
        jit_compile=False,
    )
    return model


def run(recipe, output_root, log=print):
    d, m, t = recipe["data"], recipe["model"], recipe["train"]
    data = many_to_one.prepare(recipe, log)
    train_values = data.labels("train")
    scored = data.source.numeric["target"] and _scores(train_values) is not None
    if not scored and len(train_values) > MAX_CLASSES:
        kinds = sorted(train_values)
        raise UserError(
            f"{d['source']}: the label column {d['label']!r} holds {len(kinds)} different values "
            f"(e.g. {', '.join(repr(str(k)) for k in kinds[:3])}); sentiment takes a numeric score or "
            f"at most {MAX_CLASSES} class labels such as neg/pos"
        )

    def labels(split):  # counts of each split's labels: a score's band, or the label as it is
        counts = Counter()
        for value, count in data.labels(split).items():
            counts[str(polarity(float(value), d["neutral_band"])) if scored else value] += count
        return counts

    classes, sizes = many_to_one.classes_of(data, d["source"], log, labels)
    train_labels = labels("train")
    # Scores are learned on [-1, 1]: the data's own scale is restored at the output.
    scale = (float(np.ceil(max(abs(float(v)) for v in train_values))) or 1.0) if scored else 1.0
    if scored:
        mean_score = sum(float(v) * c for v, c in train_values.items()) / sum(train_values.values())
    else:
        mean_score = train_labels[classes[-1]] / sum(train_labels.values())
    table = many_to_one.lookup(classes)
    band = d["neutral_band"]

    def targets(columns):
        if not scored:
            y = table.lookup(columns["target"])
            return {"polarity": y}, y >= 0
        score = tf.strings.to_number(columns["target"], tf.float32)
        y = table.lookup(polarity_tf(score, band))
        return {"polarity": y, "score": (score / scale)[:, None]}, y >= 0

    if scored:
        log(f"score_loss and score_mae while training are on the training scale: the data's score / {scale:g} (-1..1)")
    with training.strategy(recipe).scope():
        model = build(data.vectorizer.vocabulary_size(), classes, scored, m, t)
    history, seconds, speed = many_to_one.fit(model, data, targets, recipe, output_root)
    # Test metrics accumulate batch by batch, per group: confusion counts and the sums behind MAE and r.
    majority = classes.index(max(classes, key=lambda c: train_labels[c]))
    groups = {}
    for out, y, extras in many_to_one.predictions(model, data, targets):
        if scored:  # the label users see is the predicted score's band
            true_score, predicted_score = y["score"][:, 0] * scale, out["score"][:, 0] * scale
            bands = polarity(predicted_score, band)  # a band training never saw is column K: always wrong
            predicted = np.array([classes.index(b) if b in classes else len(classes) for b in bands], dtype=int)
        else:  # label-only data: the score is the probability of the positive (last) class
            true_score = (y["polarity"] == len(classes) - 1).astype(float)
            predicted_score, predicted = out["polarity"][:, -1], out["polarity"].argmax(-1)
        chosen = [("all", slice(None))]
        if "domain" in extras:
            chosen += [(g, extras["domain"] == g) for g in np.unique(extras["domain"])]
        for group, sel in chosen:
            g = groups.setdefault(group, _Group(len(classes)))
            g.add(y["polarity"][sel], predicted[sel], true_score[sel], predicted_score[sel], majority, mean_score)
    rows = [groups["all"].row("all", classes)]
    rows += [groups[k].row(k, classes) for k in sorted(groups) if k != "all"]
    log(
        "\ntest split (majority_*: the majority-class baseline; mean_score_mae: always the training mean; "
        + (
            f"score_mae and score_r, the Pearson correlation of predicted with true scores, on the data's scale "
            f"(-{scale:g}..{scale:g}))"
            if scored
            else "score: the probability of the last class)"
        )
    )
    log(evaluation.table(rows, list(rows[0])))
    metadata = {
        "data": {
            "source": d["source"],
            "sizes": sizes,
            "skipped_empty": dict(zip(sources.SPLITS, data.profile.empty)),
            "skipped_bad_rows": data.profile.bad_rows,
            "scored": bool(scored),
            "score_scale": scale,
        },
        "metrics": {
            "headline": {"polarity_accuracy": rows[0]["accuracy"], "score_pearson": rows[0]["score_r"]},
            "test": rows,
        },
        "history": history,
        "train_seconds": round(seconds, 1),
        "train_tokens": speed["tokens"],
        "train_tokens_per_second": speed["tokens_per_second"],
    }

    def outputs(result):
        if not scored:
            return {"score": result["polarity"][:, -1]}
        score = result["score"][:, 0] * scale
        return {"score": score, "label": polarity_tf(score, band)}

    return many_to_one.save(recipe, output_root, model, data.vectorizer, classes, outputs, metadata, extras=())


class _Group:
    """One group's test metrics, accumulated batch by batch: confusion matrices of the model and
    of the majority-class baseline, and running sums for the score's MAE and r."""

    def __init__(self, n_classes):
        self.matrix = np.zeros((n_classes + 1, n_classes + 1), dtype=np.int64)  # + a band training never saw
        self.baseline = np.zeros_like(self.matrix)
        self.moments, self.mean_error, self.n = evaluation.Moments(), 0.0, 0

    def add(self, y, predicted, true_score, predicted_score, majority, mean_score):
        np.add.at(self.matrix, (y, predicted), 1)
        np.add.at(self.baseline, (y, np.full_like(y, majority)), 1)
        self.moments.add(true_score, predicted_score)
        self.mean_error += float(np.abs(np.asarray(true_score, float) - mean_score).sum())
        self.n += len(y)

    def row(self, group, classes):
        labels = [*classes, None]
        c = evaluation.confusion_scores(self.matrix, labels, classes)
        b = evaluation.confusion_scores(self.baseline, labels, classes)
        r = self.moments.result()
        return {
            "group": group,
            "texts": self.n,
            "accuracy": c["accuracy"],
            "macro_f1": c["macro_f1"],
            "score_mae": r["mae"],
            "score_r": r["pearson"],
            "majority_accuracy": b["accuracy"],
            "majority_f1": b["macro_f1"],
            "mean_score_mae": self.mean_error / max(self.n, 1),
        }


def rows(outputs, top_k=None):
    """Readable predictions, one dict per text. (`predict` refuses --top-k for sentiment.)"""
    return [
        {"label": label.decode(), "score": round(float(score), 3)}
        for label, score in zip(outputs["label"], outputs["score"])
    ]
