"""Sentiment's targets: a numeric score and its polarity band, or class labels (neg/pos)."""

from collections import Counter
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from nlpapps.errors import UserError
from nlpapps.tasks.text import data as text_data

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


@dataclass
class Labels:
    """What the target column means: `scored` (a numeric score, learned on [-1, 1] as score / scale)
    or class labels; the polarity `classes` seen in training with the `sizes` of each split, the
    training labels' counts, the training mean score (the mean baseline) and the neutral `band`.
    With scores and a band of 0, neutral is not a class: a row rated exactly 0 has polarity -1,
    which the polarity loss ignores, and trains the score head alone."""

    scored: bool
    classes: list
    sizes: dict
    train_counts: Counter
    scale: float
    mean_score: float
    band: float

    @classmethod
    def of(cls, data, d, log):
        train_values = data.labels("train")
        scored = bool(data.source.numeric["target"] and _scores(train_values) is not None)
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

        train_counts = labels("train")
        if scored:  # every scored row trains; rows rated exactly 0 (band 0) train the score head alone
            classes = sorted(c for c in train_counts if c != "neutral" or d["neutral_band"] > 0)
            sizes = {name: sum(data.labels(name).values()) for name in ("train", "validation", "test")}
            if len(classes) < 2:
                raise UserError(f"{d['source']}: every training score has the same sign; need both")
        else:
            classes, sizes = text_data.classes_of(data, d["source"], log, labels)
        # Scores are learned on [-1, 1]: the data's own scale is restored at the output.
        scale = (float(np.ceil(max(abs(float(v)) for v in train_values))) or 1.0) if scored else 1.0
        if scored:
            mean_score = sum(float(v) * c for v, c in train_values.items()) / sum(train_values.values())
        else:
            mean_score = train_counts[classes[-1]] / sum(train_counts.values())
        return cls(scored, classes, sizes, train_counts, scale, mean_score, d["neutral_band"])

    def targets_fn(self):
        """`targets(columns)` for `Data.examples`: the polarity index (and the scaled score)."""
        table, scored, scale, band = text_data.lookup(self.classes), self.scored, self.scale, self.band

        def targets(columns):
            if not scored:
                y = table.lookup(columns["target"])
                return {"polarity": y}, y >= 0
            score = tf.strings.to_number(columns["target"], tf.float32)
            y = table.lookup(polarity_tf(score, band))
            return {"polarity": y, "score": (score / scale)[:, None]}, tf.math.is_finite(score)

        return targets

    def served(self, result):
        """The export's score and label from the model's outputs (see `serving.serving`)."""
        if not self.scored:
            return {"score": result["polarity"][:, -1]}
        score = result["score"][:, 0] * self.scale
        return {"score": score, "label": polarity_tf(score, self.band)}
