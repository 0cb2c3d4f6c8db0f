"""Sentiment training speed: the length-bucketed pipeline against a fixed-length one padded to 200
tokens (as in the Keras IMDB example), same model and data; then SavedModel inference throughput.

    python benchmarks/sentiment_speed.py [--epochs 3] [--model saved_models/sentiment/N]

Prints real (non-padding) tokens per second of training, seconds per epoch and test accuracy for
each pipeline, and texts per second of the exported model at batch 1 and batch 256.
"""

import argparse
import time

import keras
import numpy as np
import tensorflow as tf

from nlpapps import evaluation, export, recipes, training
from nlpapps.data import text
from nlpapps.tasks import sentiment
from nlpapps.tasks.text import data as text_data


class EpochTimer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.start)

    def on_train_begin(self, logs=None):
        self.seconds = []


def in_memory(data, split, classes):
    """A split's ragged token ids and targets ({polarity, score / 4}) as the streamed pipeline makes them."""
    table = text_data.lookup(classes)

    def targets(columns):
        score = tf.strings.to_number(columns["target"], tf.float32)
        y = table.lookup(sentiment.polarity_tf(score, 0.0))
        return {"polarity": y, "score": (score / 4)[:, None]}, y >= 0

    rows = list(data.examples(split, targets).as_numpy_iterator())
    ids = tf.RaggedTensor.from_row_lengths(np.concatenate([x for x, _, _ in rows]), [len(x) for x, _, _ in rows])
    return ids, {k: np.stack([y[k] for _, y, _ in rows]) for k in ("polarity", "score")}


def train(recipe, ids, targets, vocab_size, bucketed, epochs):
    t = recipe["train"]
    training.seed_everything(t["seed"])
    batches = text.pipeline(
        ids["train"],
        targets["train"],
        batch_size=t["batch_size"],
        shuffle=True,
        seed=t["seed"],
        bucketed=bucketed,
        pad_to=200,
    )
    model = sentiment.build(vocab_size, ["negative", "positive"], True, recipe["model"], t)
    timer = EpochTimer()
    model.fit(batches, epochs=epochs, callbacks=[timer], verbose=0, shuffle=False)
    test = text.pipeline(ids["test"], targets["test"], batch_size=256, shuffle=False, seed=0)
    right = sum(
        int((model(x, training=False)["polarity"].numpy().argmax(-1) == y["polarity"].numpy()).sum()) for x, y in test
    )
    return timer.seconds, right / int(ids["test"].nrows())


def serving_throughput(path, texts):
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    rows = []
    for batch, calls in ((1, 300), (256, 20)):
        chunks = [tf.constant(texts[i * batch % len(texts) :][:batch]) for i in range(calls)]
        serve(text=chunks[0])  # warm-up: tracing and first-call allocation
        start = time.perf_counter()
        for chunk in chunks:
            serve(text=chunk)
        rows.append({"batch": batch, "texts_per_s": sum(len(c) for c in chunks) / (time.perf_counter() - start)})
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--model", help="SavedModel to time; default: the newest saved_models/sentiment")
    args = parser.parse_args()
    recipe = recipes.load("sentiment")
    data = text_data.prepare(recipe, print)
    vectorizer, classes = data.vectorizer, ["negative", "positive"]
    ids, targets = {}, {}
    for split in ("train", "test"):
        ids[split], targets[split] = in_memory(data, split, classes)
    real_tokens = int(ids["train"].row_lengths().numpy().sum())

    rows = []
    for name, bucketed in (("bucketed", True), ("fixed 200", False)):
        seconds, accuracy = train(recipe, ids, targets, vectorizer.vocabulary_size(), bucketed, args.epochs)
        steady = float(np.mean(seconds[1:] or seconds))  # the first epoch also traces the graph
        rows.append(
            {
                "pipeline": name,
                "first_epoch_s": seconds[0],
                "epoch_s": steady,
                "real_tokens_per_s": real_tokens / steady,
                "test_accuracy": accuracy,
            }
        )
    rows.append({"pipeline": "speed-up", "epoch_s": rows[1]["epoch_s"] / rows[0]["epoch_s"]})
    print(f"\ntraining, default sentiment model, {args.epochs} epochs, {real_tokens} real tokens per epoch")
    print(evaluation.table(rows, ["pipeline", "first_epoch_s", "epoch_s", "real_tokens_per_s", "test_accuracy"]))

    path = args.model or export.latest("saved_models", "sentiment")
    print(f"\nSavedModel inference, {path}")
    texts = [t for batch in data.source.batches(2) for t in batch[data.source.names.index("text")]]
    print(evaluation.table(serving_throughput(path, texts), ["batch", "texts_per_s"]))


if __name__ == "__main__":
    main()
