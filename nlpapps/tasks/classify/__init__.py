"""Text classification (many-to-one): any label set the data brings, e.g. topics, question types,
spam, intents.

Two classes train one sigmoid unit, more a softmax. Either way the model's single output is
probabilities[batch, K] over the classes in sorted order ([1 - p, p] for the sigmoid), so the export
gives the same label/probabilities/classes for every K. Class weights can balance skewed data.

Modules by role: `model` (and class weights), `evaluation` (test metrics and baselines); the data,
training and export are the shared `nlpapps.tasks.text`.
"""

import numpy as np

from nlpapps import training
from nlpapps.data import sources
from nlpapps.errors import UserError
from nlpapps.evaluation import table
from nlpapps.tasks.classify.evaluation import test_scores
from nlpapps.tasks.classify.model import build, class_weights, describe
from nlpapps.tasks.text import data as text_data
from nlpapps.tasks.text import fit, serving
from nlpapps.tasks.text.model import words_of

NAME = "classify"
__all__ = ["NAME", "build", "class_weights", "rows", "run"]


def run(recipe, output_root, log=print):
    d, t, max_tokens = recipe["data"], recipe["train"], recipe["text"]["max_tokens"]
    data = text_data.prepare(recipe, log)
    classes, sizes = text_data.classes_of(data, d["source"], log)
    for name in ("validation", "test"):
        if not sizes[name]:
            raise UserError(f"{d['source']}: no {name} row has a label seen in training; the data has too few rows")
    train_counts = data.labels("train")
    weights = class_weights([train_counts[c] for c in classes], t["class_weights"])
    head = "one sigmoid unit" if len(classes) == 2 else "softmax"
    log(f"{len(classes)} classes, {head}; class weights {describe(weights, classes)}")
    lookup = text_data.lookup(classes)

    def targets(columns):
        y = lookup.lookup(columns["target"])
        return y, y >= 0

    words = words_of(data.vectorizer, recipe["model"], log)
    with training.strategy(recipe).scope():
        model = build(data.vectorizer.vocabulary_size(), len(classes), recipe["model"], t["learning_rate"], words)
    history, seconds, speed = fit.fit(model, data, targets, recipe, output_root, class_weight=weights)
    test = test_scores(model, data, targets, classes, majority=max(classes, key=lambda c: train_counts[c]))
    cut = int(data.cut.numpy())
    if cut:
        log(f"{cut} texts reached text.max_tokens = {max_tokens} tokens; longer ones were cut there")
    log("\ntest split")
    log(table(test.summary, list(test.summary[0])))
    log("\n" + table(test.per_class(), list(test.per_class()[0])))
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
            "headline": {"accuracy": test.scores["accuracy"], "macro_f1": test.scores["macro_f1"]},
            "test": test.summary,
            "per_class": test.scores["per_class"],
        },
        "figures": {"confusion_matrix": "confusion_matrix.png", "training_curves": "training_curves.png"},
        "history": history,
        "train_seconds": round(seconds, 1),
        "train_tokens": speed["tokens"],
        "train_tokens_per_second": speed["tokens_per_second"],
    }
    return serving.save(
        recipe,
        output_root,
        model,
        data.vectorizer,
        classes,
        lambda result: {},
        metadata,
        extras=(test.confusion_figure(),),
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
