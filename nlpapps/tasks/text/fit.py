"""Training on the streamed training split, and the test split's predictions batch by batch."""

import time

import numpy as np
import tensorflow as tf

from nlpapps import training
from nlpapps.data import text


@tf.autograph.experimental.do_not_convert
def _inputs(x, y, extras):
    return x, y


def fit(model, data, targets, recipe, output_root, monitor="val_loss", mode="min", class_weight=None):
    """Fit on bucketed batches of the streamed training split, `class_weight` forwarded to Keras;
    returns (history, seconds, {"tokens": real tokens trained on, "tokens_per_second": while training})."""
    t, max_tokens = recipe["train"], recipe["text"]["max_tokens"]
    tokens = tf.Variable(0, dtype=tf.int64, trainable=False)
    clocks = []  # per epoch: when its first and its last training batch left the pipeline

    examples = {k: data.examples(k, targets).map(_inputs) for k in ("train", "validation")}
    shuffle = min(t["shuffle_buffer"], data.size("train"))

    def train(epoch):  # each epoch's order from (seed, epoch): a resumed run sees the same batches
        clock = tf.Variable([np.inf, 0.0], dtype=tf.float64, trainable=False)
        clocks.append(clock)

        @tf.autograph.experimental.do_not_convert
        def counted(x, y):  # real tokens, not padding, and the time: the throughput figure
            now = tf.timestamp()
            tokens.assign_add(tf.math.count_nonzero(x, dtype=tf.int64))
            clock.assign(tf.stack([tf.minimum(clock[0], now), now]))
            return x, y

        ds = text.batches(
            examples["train"],
            batch_size=t["batch_size"],
            shuffle=shuffle,
            seed=t["seed"],
            max_length=max_tokens,
            epoch=epoch,
        )
        return (ds.take(t["steps_per_epoch"]) if t["steps_per_epoch"] else ds).map(counted)

    validation = text.batches(
        examples["validation"], batch_size=t["batch_size"], shuffle=0, seed=t["seed"], max_length=max_tokens
    )
    start = time.perf_counter()
    history = training.fit(
        model,
        train,
        validation,
        t,
        training.run_dir(output_root, recipe),
        monitor=monitor,
        mode=mode,
        class_weight=class_weight,
    )
    # Seconds between each epoch's first and last training batch: training alone, without validation.
    training_seconds = sum(max(float(c[1] - c[0]), 0.0) for c in (c.numpy() for c in clocks) if np.isfinite(c[0]))
    speed = {
        "tokens": int(tokens.numpy()),
        "tokens_per_second": round(int(tokens.numpy()) / max(training_seconds, 1e-9)),
    }
    return history, time.perf_counter() - start, speed


def predictions(model, data, targets, split="test", texts=False, batch_size=256):
    """(model outputs, targets, extras) of `split`, batch by batch as numpy, batched by length like
    training: metrics accumulate without holding every prediction. extras: see `Data.examples`,
    its strings as str."""
    ds = text.batches(
        data.examples(split, targets, texts), batch_size=batch_size, shuffle=0, seed=0, max_length=data.max_tokens
    )
    # Compiled once for every batch shape: an eager call per batch costs far more than the model does.
    infer = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    for x, y, extras in ds:
        out = infer(x)
        yield (
            tf.nest.map_structure(np.asarray, out),
            tf.nest.map_structure(np.asarray, y),
            {k: np.array([s.decode("utf-8", "replace") for s in v.numpy()]) for k, v in extras.items()},
        )
