"""Text classification (many-to-one): any label set the data brings, e.g. topics, question types,
spam, intents.

Two classes train one sigmoid unit, more a softmax. Either way the model's single output is
probabilities[batch, K] over the classes in sorted order ([1 - p, p] for the sigmoid), so the export
gives the same label/probabilities/classes for every K. Class weights can balance skewed data.
"""

import keras
import numpy as np

from nlpapps import evaluation, training
from nlpapps.data import sources
from nlpapps.errors import UserError
from nlpapps.tasks import many_to_one

NAME = "classify"


def build(vocab_size, n_classes, m, learning_rate):
    ids, x = many_to_one.encoder(vocab_size, m)
    if n_classes == 2:
        p = keras.layers.Dense(1, activation="sigmoid", name="sigmoid")(x)
        probabilities = keras.ops.concatenate([1 - p, p], axis=-1)
    else:
        probabilities = keras.layers.Dense(n_classes, activation="softmax", name="softmax")(x)
    model = keras.Model(ids, {"probabilities": probabilities}, name="classify")
    # On [1 - p, p] this loss is the binary cross-entropy of p.
    model.compile(
        optimizer=training.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=False,
    )
    return model


def class_weights(counts, mode):
    """Balanced weights n / (K * count) from the training `counts` of each class when `mode` is
    on, or auto and the largest class has at least 3× the examples of the smallest; None otherwise."""
    counts = np.asarray(counts, dtype=float)
    if mode == "off" or (mode == "auto" and counts.max() < 3 * counts.min()):
        return None
    return {i: float(w) for i, w in enumerate(counts.sum() / (len(counts) * counts))}


def run(recipe, output_root, log=print):
    d, t, max_tokens = recipe["data"], recipe["train"], recipe["text"]["max_tokens"]
    data = many_to_one.prepare(recipe, log)
    classes, sizes = many_to_one.classes_of(data, d["source"], log)
    for name in ("validation", "test"):
        if not sizes[name]:
            raise UserError(f"{d['source']}: no {name} row has a label seen in training; the data has too few rows")
    train_counts = data.labels("train")
    weights = class_weights([train_counts[c] for c in classes], t["class_weights"])
    note = (
        "off"
        if weights is None
        else ", ".join(f"{classes[i]} {w:.2f}" for i, w in weights.items())
        if len(weights) <= 8
        else f"from {min(weights.values()):.2f} to {max(weights.values()):.2f}"
    )
    log(f"{len(classes)} classes, {'one sigmoid unit' if len(classes) == 2 else 'softmax'}; class weights {note}")
    table = many_to_one.lookup(classes)

    def targets(columns):
        y = table.lookup(columns["target"])
        return y, y >= 0

    with training.strategy(recipe).scope():
        model = build(data.vectorizer.vocabulary_size(), len(classes), recipe["model"], t["learning_rate"])
    history, seconds, speed = many_to_one.fit(model, data, targets, recipe, output_root, class_weight=weights)
    # Test metrics accumulate batch by batch in a confusion matrix (rows: true class).
    matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for out, y, _ in many_to_one.predictions(model, data, targets):
        np.add.at(matrix, (y, out["probabilities"].argmax(-1)), 1)
    cut = int(data.cut.numpy())
    if cut:
        log(f"{cut} texts reached text.max_tokens = {max_tokens} tokens; longer ones were cut there")
    majority = max(classes, key=lambda c: train_counts[c])
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
    per_class = [{"class": k, **v} for k, v in scores["per_class"].items()]
    log("\ntest split")
    log(evaluation.table(summary, list(summary[0])))
    log("\n" + evaluation.table(per_class, list(per_class[0])))
    metadata = {
        "data": {
            "source": d["source"],
            "sizes": sizes,
            "skipped_empty": dict(zip(sources.SPLITS, data.profile.empty)),
            "skipped_bad_rows": data.profile.bad_rows,
            "texts_cut": cut,
            "class_weights": weights,
        },
        "metrics": {
            "headline": {"accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"]},
            "test": summary,
            "per_class": scores["per_class"],
        },
        "figures": {"confusion_matrix": "confusion_matrix.png", "training_curves": "training_curves.png"},
        "history": history,
        "train_seconds": round(seconds, 1),
        "train_tokens": speed["tokens"],
        "train_tokens_per_second": speed["tokens_per_second"],
    }
    shown = [i for i, c in enumerate(classes) if c in scored]
    confusion = (
        "confusion_matrix.png",
        lambda p: evaluation.plot_confusion(
            None, None, [classes[i] for i in shown], p, matrix=matrix[np.ix_(shown, shown)]
        ),
    )
    return many_to_one.save(
        recipe, output_root, model, data.vectorizer, classes, lambda result: {}, metadata, extras=(confusion,)
    )


def rows(outputs, top_k=None):
    """Readable predictions, one dict per text: the label and its probability, then with `top_k`
    the next best as label_2, probability_2, ... up to label_K."""
    classes = [c.decode() for c in outputs["classes"]]
    out = []
    for probabilities in outputs["probabilities"]:
        best = np.argsort(-probabilities, kind="stable")[: top_k or 1]
        row = {}
        for rank, i in enumerate(best, 1):
            suffix = "" if rank == 1 else f"_{rank}"
            row[f"label{suffix}"], row[f"probability{suffix}"] = classes[i], round(float(probabilities[i]), 4)
        out.append(row)
    return out
