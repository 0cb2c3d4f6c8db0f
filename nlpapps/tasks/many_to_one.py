"""What the many-to-one text tasks (sentiment, classify) share: reading texts with a target column,
the text encoder, fitting, and the export of a text-in, named-outputs-out SavedModel."""

import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from nlpapps import evaluation, export, training
from nlpapps.blocks import recurrent_stack
from nlpapps.data import sources, stream, text
from nlpapps.errors import UserError


def prepare(recipe, log):
    """The source as a stream, one pass over it (`stream.Profile`: column kinds, rows that do not
    fit, label counts per split, a sample of training texts) and the vectorizer fitted on that
    sample, as a `Data`."""
    d, s = recipe["data"], recipe["text"]
    source = stream.Source(
        d["source"],
        {"text": d["text"], "target": d["label"], "domain": d.get("domain", "")},
        optional=("domain",),
        fractions=tuple(d["split"]),
        seed=d["seed"],
    )
    start = time.perf_counter()
    profile = source.profile(s["vocab_sample_rows"], d["max_bad_rows"], log)
    seconds = time.perf_counter() - start
    if profile.sample:
        text.require_text(profile.sample, d["text"])
    if sum(profile.empty):
        counts = ", ".join(f"{k} {v}" for k, v in zip(stream.SPLITS, profile.empty))
        log(f"skipped {sum(profile.empty)} empty texts ({counts})")
    for name, size in zip(stream.SPLITS, profile.sizes):
        if not size:
            raise UserError(f"{d['source']}: the {name} split is empty; the data has too few rows")
    vectorizer = text.fit_vectorizer(profile.sample, s["vocab_size"], s["ngrams"])
    log(
        f"data: {d['source']}: "
        + ", ".join(f"{k} {v}" for k, v in zip(stream.SPLITS, profile.sizes))
        + f" ({profile.rows} rows read in {seconds:.1f} s, {profile.rows / max(seconds, 1e-9):,.0f} rows/s)"
        + f"; vocabulary {vectorizer.vocabulary_size()} from {len(profile.sample)} training texts"
        + f", texts cut to {s['max_tokens']} tokens"
    )
    return Data(source, profile, vectorizer, recipe)


class Data:
    """A streamed source ready to train on: `examples(split, targets)` is a tf.data pipeline of
    (token ids, targets, extras) examples, tokenized in parallel inside the pipeline; small splits
    (up to data.cache_rows rows) are kept in memory after their first pass."""

    def __init__(self, source, profile, vectorizer, recipe):
        self.source, self.profile, self.vectorizer = source, profile, vectorizer
        self.max_tokens, self.cache_rows = recipe["text"]["max_tokens"], recipe["data"]["cache_rows"]
        # Texts that reached max_tokens, counted as the pipelines tokenize them (once for cached splits).
        self.cut = tf.Variable(0, dtype=tf.int64, trainable=False)

    def size(self, split):
        return self.profile.sizes[stream.SPLITS.index(split)]

    def labels(self, split, column="target"):
        """Counts of the values of `column` in `split` (fitting rows with a text)."""
        return self.profile.values[column][stream.SPLITS.index(split)]

    def examples(self, split, targets):
        """(ids, targets, extras) of every row of `split`: `targets(columns)` maps a batch's string
        columns to (targets, keep); rows it does not keep and rows without a token are left out.
        extras holds the domain where the source has one."""
        vectorizer, max_tokens, cut = self.vectorizer, self.max_tokens, self.cut

        def encode(columns):
            ids = tf.RaggedTensor.from_tensor(vectorizer(columns["text"]), padding=0)[:, :max_tokens]
            y, keep = targets(columns)
            keep = keep & (ids.row_lengths() > 0)
            cut.assign_add(tf.math.count_nonzero(keep & (ids.row_lengths() >= max_tokens), dtype=tf.int64))
            extras = {k: columns[k] for k in ("domain",) if k in columns}
            pick = lambda t: tf.boolean_mask(t, keep)  # noqa: E731
            return (tf.cast(tf.ragged.boolean_mask(ids, keep), tf.int32), *tf.nest.map_structure(pick, (y, extras)))

        index = stream.SPLITS.index(split)
        return stream.dataset(self.source, index, encode, cache=self.size(split) <= self.cache_rows)


@tf.autograph.experimental.do_not_convert
def _inputs(x, y, extras):
    return x, y


def encoder(vocab_size, m):
    """Token ids → embedding → shared recurrent block → one vector per text."""
    ids = keras.Input((None,), dtype="int32", name="token_ids")
    x = keras.layers.Embedding(vocab_size, m["embedding_dim"], mask_zero=True, name="embedding")(ids)
    # Whole embedding channels are dropped, the same ones at every step of a text: a dropped feature
    # cannot be read from the neighbouring words instead, as it could with plain dropout.
    x = keras.layers.SpatialDropout1D(m["embedding_dropout"], name="embedding_dropout")(x)
    x = recurrent_stack(
        cell=m["cell"],
        units=m["units"],
        depth=m["depth"],
        bidirectional=m["bidirectional"],
        dropout=m["dropout"],
        residual=m["residual"],
        pooling=m["pooling"],
        name="encoder",
    )(x)
    return ids, x


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


def predictions(model, data, targets, batch_size=256):
    """(model outputs, targets, extras) of the test split, batch by batch as numpy, batched by
    length like training: metrics accumulate without holding every prediction."""
    ds = text.batches(
        data.examples("test", targets), batch_size=batch_size, shuffle=0, seed=0, max_length=data.max_tokens
    )
    # Compiled once for every batch shape: an eager call per batch costs far more than the model does.
    infer = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    for x, y, extras in ds:
        out = infer(x)
        yield (
            tf.nest.map_structure(np.asarray, out),
            tf.nest.map_structure(np.asarray, y),
            {k: v.numpy().astype(str) for k, v in extras.items()},
        )


def classes_of(data, origin, log, labels=None):
    """The label set seen in training (`labels(split)`: counts of a split's labels; the target
    column's by default). Validation/test rows whose label training never saw cannot be learned or
    scored: they are dropped (by `lookup` in the pipeline) and counted. Returns (classes, sizes)."""
    labels = labels or data.labels
    classes = sorted(labels("train"))
    if len(classes) < 2:
        raise UserError(f"{origin}: the label column has one class only ({str(classes[0])!r}); need two or more")
    sizes = {}
    for name in stream.SPLITS:
        counts = labels(name)
        unseen = sum(c for k, c in counts.items() if k not in classes)
        if unseen:
            log(f"{name}: dropped {unseen} rows whose label is not in the training split")
        sizes[name] = sum(counts.values()) - unseen
    return classes, sizes


def lookup(classes):
    """A table from class name to its index, -1 for a class training never saw."""
    return tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(classes), tf.range(len(classes), dtype=tf.int32)), -1
    )


def recipe_as_read(recipe):
    """The recipe's settings, with the columns a folder source really reads in place of the recipe's."""
    flat = recipe.flat()
    d = recipe["data"]
    if Path(d["source"]).is_dir():
        read = sources.folder_columns(
            {"text": d["text"], "label": d["label"], "domain": d.get("domain", "")}, optional=("domain",)
        )
        flat.update(
            {
                f"data.{k}": {"text": "(the .txt files)", "label": "(the class sub-folders)"}.get(v, v)
                for k, v in read.items()
                if f"data.{k}" in flat
            }
        )
    return flat


def serving(model, vectorizer, classes, outputs, max_tokens):
    """The exported function: `text: string[batch]` → label, probabilities, classes, and the named
    outputs that `outputs(model outputs)` builds. The model runs compiled, on length-bucketed chunks."""
    class_names = tf.constant(classes)
    numeric = export.compiled(lambda token_ids: model(token_ids, training=False), model.weights)
    edges = text.serving_edges(max_tokens)
    no_words = text.NoWords(name="no_words")

    def serve(text_in):
        ids = vectorizer(text_in)[:, :max_tokens]
        result = no_words([ids, export.by_length(numeric, ids, edges)])
        probabilities = result[next(iter(result))] if isinstance(result, dict) else result
        # The task's own outputs come last: a task may give its label another meaning than the argmax.
        return {
            "label": tf.gather(class_names, tf.argmax(probabilities, axis=-1)),
            "probabilities": probabilities,
            "classes": class_names,
            **outputs(result),
        }

    return serve


def save(recipe, output_root, model, vectorizer, classes, outputs, metadata, extras):
    """Export: `text: string[batch]` → the named outputs of `serving`; the .keras twin takes the
    same strings through the same vectorizer."""
    max_tokens = recipe["text"]["max_tokens"]
    raw = keras.Input((1,), dtype="string", name="text")
    ids = text.ServingIds(max_tokens, name="serving_ids")
    token_ids = ids(vectorizer(raw))
    outputs_of = text.NoWords(name="no_words")([token_ids, model(token_ids)])
    end_to_end = keras.Model(raw, outputs_of, name=f"{recipe.task}_end_to_end")
    serve = serving(model, vectorizer, classes, outputs, max_tokens)
    return export.save(
        output_root,
        recipe,
        endpoints={"serving_default": (serve, [tf.TensorSpec([None], tf.string, name="text")])},
        track=[model, vectorizer],
        keras_model=end_to_end,
        metadata={"recipe": recipe_as_read(recipe), "classes": list(classes), **metadata},
        extras=[("training_curves.png", lambda p: evaluation.plot_history(metadata["history"], p)), *extras],
    )
