"""The data of a many-to-one text task: a streamed source with a text and a target column,
profiled once, its vectorizer fitted on a sample of training texts, tf.data pipelines of token ids,
and the label set seen in training."""

import time

import tensorflow as tf

from nlpapps.data import stream, text, vectors
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
    extra = (
        vectors.frequent(recipe["model"]["vectors"], s["vectors_words"]) if recipe["model"]["vectors"] != "none" else ()
    )
    standardize = text.standardize_digits if s.get("digits") == "shape" else text.standardize
    vectorizer = text.fit_vectorizer(profile.sample, s["vocab_size"], s["ngrams"], standardize, extra)
    log(
        f"data: {d['source']}: "
        + ", ".join(f"{k} {v}" for k, v in zip(stream.SPLITS, profile.sizes))
        + f" ({profile.rows} rows read in {seconds:.1f} s, {profile.rows / max(seconds, 1e-9):,.0f} rows/s)"
        + f"; vocabulary {vectorizer.vocabulary_size()} from {len(profile.sample)} training texts"
        + (f" and the vectors' {len(extra)} most frequent words" if extra else "")
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

    def examples(self, split, targets, texts=False):
        """(ids, targets, extras) of every row of `split`: `targets(columns)` maps a batch's string
        columns to (targets, keep); rows it does not keep and rows without a token are left out.
        extras holds the domain where the source has one, and with `texts` the text itself."""
        vectorizer, max_tokens, cut = self.vectorizer, self.max_tokens, self.cut

        def encode(columns):
            ids = tf.RaggedTensor.from_tensor(vectorizer(columns["text"]), padding=0)[:, :max_tokens]
            y, keep = targets(columns)
            keep = keep & (ids.row_lengths() > 0)
            cut.assign_add(tf.math.count_nonzero(keep & (ids.row_lengths() >= max_tokens), dtype=tf.int64))
            extras = {k: columns[k] for k in ("domain", "text")[: 1 + texts] if k in columns}
            pick = lambda t: tf.boolean_mask(t, keep)  # noqa: E731
            return (tf.cast(tf.ragged.boolean_mask(ids, keep), tf.int32), *tf.nest.map_structure(pick, (y, extras)))

        index = stream.SPLITS.index(split)
        return stream.dataset(self.source, index, encode, cache=self.size(split) <= self.cache_rows)


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
