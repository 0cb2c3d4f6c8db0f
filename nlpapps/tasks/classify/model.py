"""Classify's model: the shared text encoder and one sigmoid unit (two classes) or a softmax, and
the class weights that balance skewed data."""

import keras
import numpy as np

from nlpapps import training
from nlpapps.tasks.text.model import encoder


def build(vocab_size, n_classes, m, learning_rate, words=None):
    ids, x = encoder(vocab_size, m, words)
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


def describe(weights, classes):
    """The class weights in a few words, for the log."""
    if weights is None:
        return "off"
    if len(weights) <= 8:
        return ", ".join(f"{classes[i]} {w:.2f}" for i, w in weights.items())
    return f"from {min(weights.values()):.2f} to {max(weights.values()):.2f}"
