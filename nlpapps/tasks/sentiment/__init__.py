"""Sentiment (many-to-one): a text's polarity and its intensity score on the data's own scale.

Scored data (the shipped snippets: mean human rating -4..+4) trains two heads, a polarity head and
a score regression; the label a user sees is the score's band (positive above `neutral_band`,
negative below minus it, neutral in between; a score of exactly 0 is neutral), computed from the
score in the export and in evaluation alike, so label and score never disagree. The polarity head
helps training and its probabilities are exported as they are; with a band of 0 its classes are
negative and positive, and rows rated exactly 0 train the score head alone. Label-only data (imdb_reviews:
neg/pos) trains the polarity head alone: the label is its most likely class and the score the
probability of the last (positive) class.

Modules by role: `labels` (targets), `model`, `evaluation` (test metrics and baselines); the data,
training and export are the shared `nlpapps.tasks.text`.
"""

from nlpapps import training
from nlpapps.data import sources
from nlpapps.evaluation import table
from nlpapps.tasks.sentiment import lexicon
from nlpapps.tasks.sentiment.evaluation import test_rows
from nlpapps.tasks.sentiment.labels import MAX_CLASSES, Labels, polarity, polarity_tf
from nlpapps.tasks.sentiment.model import build
from nlpapps.tasks.text import data as text_data
from nlpapps.tasks.text import fit, serving
from nlpapps.tasks.text.model import words_of

NAME = "sentiment"
__all__ = ["MAX_CLASSES", "NAME", "build", "polarity", "polarity_tf", "rows", "run"]


def run(recipe, output_root, log=print):
    d, m, t = recipe["data"], recipe["model"], recipe["train"]
    data = text_data.prepare(recipe, log)
    labels = Labels.of(data, d, log)
    prior = lexicon.valences if m["lexicon"] == "vader" else None
    words = words_of(data.vectorizer, m, log, prior)
    rules = lexicon.rules_of(data.vectorizer, m)
    if labels.scored:
        log(
            f"score_loss and score_mae while training are on the training scale: the data's score / "
            f"{labels.scale:g} (-1..1)"
        )
    with training.strategy(recipe).scope():
        model = build(data.vectorizer.vocabulary_size(), labels.classes, labels.scored, m, t, words, rules)
    history, seconds, speed = fit.fit(model, data, labels.targets_fn(), recipe, output_root)
    rows = test_rows(model, data, labels)
    log(
        "\ntest split (vader_*: the VADER lexicon's compound score; majority_*: the majority class;"
        " mean_score_mae: always the training mean; "
        + (
            f"score_mae and score_r, the Pearson correlation of predicted with true scores, on the data's scale "
            f"(-{labels.scale:g}..{labels.scale:g}))"
            if labels.scored
            else "score: the probability of the last class)"
        )
    )
    log(table(rows, list(rows[0])))
    metadata = {
        "data": {
            "source": d["source"],
            "sizes": labels.sizes,
            "skipped_empty": dict(zip(sources.SPLITS, data.profile.empty)),
            "skipped_bad_rows": data.profile.bad_rows,
            "scored": labels.scored,
            "score_scale": labels.scale,
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
    return serving.save(recipe, output_root, model, data.vectorizer, labels.classes, labels.served, metadata, extras=())


def rows(outputs, top_k=None):
    """Readable predictions, one dict per text. (`predict` refuses --top-k for sentiment.)"""
    return [
        {"label": label.decode(), "score": round(float(score), 3)}
        for label, score in zip(outputs["label"], outputs["score"])
    ]
