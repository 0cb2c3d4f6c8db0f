"""Sentiment's model: the shared text encoder, a polarity head, and a score head for scored data.
The polarity loss ignores the label -1 (a row rated exactly 0: see `labels.Labels`)."""

import keras

from nlpapps import training
from nlpapps.tasks.text.model import encoder


def build(vocab_size, classes, scored, m, t, words=None):
    ids, x = encoder(vocab_size, m, words)
    outputs = {"polarity": keras.layers.Dense(len(classes), activation="softmax", name="polarity")(x)}
    losses = {"polarity": keras.losses.SparseCategoricalCrossentropy(ignore_class=-1)}
    metrics = {"polarity": ["accuracy"]}
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
