"""Sentiment (many-to-one): a text's polarity and its intensity score on the data's own scale.

Scored data (the shipped snippets: mean human rating -4..+4) trains two heads, a polarity head and
a score regression; the label a user sees is the score's band (positive above `neutral_band`,
negative below minus it, neutral in between; a score of exactly 0 is neutral), computed from the
score in the export and in evaluation alike, so label and score never disagree. The polarity head
helps training and its probabilities are exported as they are. Label-only data (imdb_reviews:
neg/pos) trains the polarity head alone: the label is its most likely class and the score the
probability of the last (positive) class.
"""

import keras
import numpy as np
import tensorflow as tf

from nlpapps import evaluation, training
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
    """The column as numeric scores; None for class labels (text, or 0/1 as binary datasets use)."""
    try:
        scores = np.asarray(values, dtype=float)
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
        optimizer=keras.optimizers.Adam(t["learning_rate"]),
        loss=losses,
        loss_weights=weights,
        metrics=metrics,
        jit_compile=False,
    )
    return model


def run(recipe, output_root, log=print):
    d, m, t = recipe["data"], recipe["model"], recipe["train"]
    splits, vectorizer, ids, dropped = many_to_one.prepare(recipe, log)
    scored = all(_scores(v["target"]) is not None for v in splits.values())
    kinds = sorted(set(splits["train"]["target"]))
    if not scored and len(kinds) > MAX_CLASSES:
        raise UserError(
            f"{d['source']}: the label column {d['label']!r} holds {len(kinds)} different values "
            f"(e.g. {', '.join(repr(str(k)) for k in kinds[:3])}); sentiment takes a numeric score or "
            f"at most {MAX_CLASSES} class labels such as neg/pos"
        )
    for columns in splits.values():
        if scored:
            columns["score"] = _scores(columns["target"])
            columns["label"] = polarity(columns["score"], d["neutral_band"])
        else:
            columns["label"] = columns["target"].astype(str)
    classes = many_to_one.classes_of(splits, ids, d["source"], log)
    # Scores are learned on [-1, 1]: the data's own scale is restored at the output.
    scale = (float(np.ceil(np.abs(splits["train"]["score"]).max())) or 1.0) if scored else 1.0
    targets = {
        k: {"polarity": v["y"], **({"score": (v["score"] / scale)[:, None].astype("float32")} if scored else {})}
        for k, v in splits.items()
    }

    with training.strategy(recipe).scope():
        model = build(vectorizer.vocabulary_size(), classes, scored, m, t)
    history, seconds = many_to_one.fit(model, ids, targets, recipe, output_root)

    test, train = splits["test"], splits["train"]
    out = many_to_one.predict(model, ids["test"])
    predicted = np.array(classes, dtype=object)[out["polarity"].argmax(-1)]
    if scored:  # the label users see is the predicted score's band
        true_score, predicted_score, mean_score = test["score"], out["score"][:, 0] * scale, train["score"].mean()
        predicted = polarity(predicted_score, d["neutral_band"]).astype(object)
    else:  # label-only data: the score is the probability of the positive (last) class
        true_score = (test["label"] == classes[-1]).astype(float)
        predicted_score, mean_score = out["polarity"][:, -1], (train["label"] == classes[-1]).mean()
    baseline = evaluation.majority(train["label"], len(predicted))
    groups = [("all", np.ones(len(predicted), bool))]
    if "domain" in test:
        groups += [(g, test["domain"] == g) for g in sorted(set(test["domain"]))]
    rows = []
    for group, sel in groups:
        c = evaluation.classification(test["label"][sel], predicted[sel], classes)
        r = evaluation.regression(true_score[sel], predicted_score[sel])
        b = evaluation.classification(test["label"][sel], baseline[sel], classes)
        b_mae = evaluation.regression(true_score[sel], np.full(sel.sum(), mean_score))["mae"]
        rows.append(
            {
                "group": group,
                "texts": int(sel.sum()),
                "accuracy": c["accuracy"],
                "macro_f1": c["macro_f1"],
                "score_mae": r["mae"],
                "score_r": r["pearson"],
                "majority_accuracy": b["accuracy"],
                "majority_f1": b["macro_f1"],
                "mean_score_mae": b_mae,
            }
        )
    log("\ntest split (majority_*: the majority-class baseline; mean_score_mae: always the training mean)")
    log(evaluation.table(rows, list(rows[0])))
    metadata = {
        "data": {
            "source": d["source"],
            "sizes": {k: len(v["text"]) for k, v in splits.items()},
            "skipped_empty": {k: dropped[k] for k in splits},
            "skipped_bad_rows": dropped["bad_rows"],
            "scored": scored,
            "score_scale": scale,
        },
        "metrics": {
            "headline": {"polarity_accuracy": rows[0]["accuracy"], "score_pearson": rows[0]["score_r"]},
            "test": rows,
        },
        "history": history,
        "train_seconds": round(seconds, 1),
    }

    def outputs(result):
        if not scored:
            return {"score": result["polarity"][:, -1]}
        score = result["score"][:, 0] * scale
        return {"score": score, "label": polarity_tf(score, d["neutral_band"])}

    return many_to_one.save(recipe, output_root, model, vectorizer, classes, outputs, metadata, extras=())


def rows(outputs, top_k=None):
    """Readable predictions, one dict per text. (`predict` refuses --top-k for sentiment.)"""
    return [
        {"label": label.decode(), "score": round(float(score), 3)}
        for label, score in zip(outputs["label"], outputs["score"])
    ]
