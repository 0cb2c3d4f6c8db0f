"""Text classification (many-to-one): any label set the data brings, e.g. topics, question types,
spam, intents.

Two classes train one sigmoid unit, more a softmax. Either way the model's single output is
probabilities[batch, K] over the classes in sorted order ([1 - p, p] for the sigmoid), so the export
gives the same label/probabilities/classes for every K. Class weights can balance skewed data.
"""

import keras
import numpy as np

from nlpapps import evaluation, training
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
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=False,
    )
    return model


def class_weights(y, n_classes, mode):
    """Balanced weights n / (K * count) when `mode` is on, or auto and the largest class has at
    least 3× the examples of the smallest; None otherwise."""
    counts = np.bincount(y, minlength=n_classes)
    if mode == "off" or (mode == "auto" and counts.max() < 3 * counts.min()):
        return None
    return {i: float(w) for i, w in enumerate(len(y) / (n_classes * counts))}


def run(recipe, output_root, log=print):
    d, t, max_tokens = recipe["data"], recipe["train"], recipe["text"]["max_tokens"]
    splits, vectorizer, ids, dropped = many_to_one.prepare(recipe, log)
    cut = sum(int((v.row_lengths().numpy() >= max_tokens).sum()) for v in ids.values())
    if cut:
        log(f"{cut} texts reached text.max_tokens = {max_tokens} tokens; longer ones were cut there")
    for columns in splits.values():
        columns["label"] = columns["target"].astype(str)
    classes = many_to_one.classes_of(splits, ids, d["source"], log)
    for name in ("validation", "test"):
        if not len(splits[name]["y"]):
            raise UserError(f"{d['source']}: no {name} row has a label seen in training; the data has too few rows")
    weights = class_weights(splits["train"]["y"], len(classes), t["class_weights"])
    note = (
        "off"
        if weights is None
        else ", ".join(f"{classes[i]} {w:.2f}" for i, w in weights.items())
        if len(weights) <= 8
        else f"from {min(weights.values()):.2f} to {max(weights.values()):.2f}"
    )
    log(f"{len(classes)} classes, {'one sigmoid unit' if len(classes) == 2 else 'softmax'}; class weights {note}")

    with training.strategy(recipe).scope():
        model = build(vectorizer.vocabulary_size(), len(classes), recipe["model"], t["learning_rate"])
    history, seconds = many_to_one.fit(
        model, ids, {k: v["y"] for k, v in splits.items()}, recipe, output_root, class_weight=weights
    )

    test, train = splits["test"], splits["train"]
    predicted = np.array(classes, dtype=object)[many_to_one.predict(model, ids["test"])["probabilities"].argmax(-1)]
    baseline = evaluation.majority(train["label"], len(predicted))
    # Scored over the classes the test split holds or the model predicts: one never seen in either
    # has no precision or recall to average into macro-F1.
    present = set(test["label"]) | set(predicted)
    scored = [c for c in classes if c in present]
    scores = evaluation.classification(test["label"], predicted, scored)
    summary = [
        {"predictor": name, "texts": len(predicted), **{k: c[k] for k in ("accuracy", "macro_f1")}}
        for name, c in (
            ("model", scores),
            ("majority class", evaluation.classification(test["label"], baseline, scored)),
        )
    ]
    per_class = [{"class": k, **v} for k, v in scores["per_class"].items()]
    log("\ntest split")
    log(evaluation.table(summary, list(summary[0])))
    log("\n" + evaluation.table(per_class, list(per_class[0])))
    metadata = {
        "data": {
            "source": d["source"],
            "sizes": {k: len(v["text"]) for k, v in splits.items()},
            "skipped_empty": {k: dropped[k] for k in splits},
            "skipped_bad_rows": dropped["bad_rows"],
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
    }
    confusion = ("confusion_matrix.png", lambda p: evaluation.plot_confusion(test["label"], predicted, scored, p))
    return many_to_one.save(
        recipe, output_root, model, vectorizer, classes, lambda result: {}, metadata, extras=(confusion,)
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
