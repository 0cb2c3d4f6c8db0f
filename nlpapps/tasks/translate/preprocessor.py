"""The pairs, their vocabularies and the teacher-forced examples the model trains on."""

import time

import numpy as np
import tensorflow as tf

from nlpapps.data import stream, text
from nlpapps.errors import UserError


def prepare(recipe, log):
    """The pairs as a stream (`stream.Source`, split by a seeded hash of the source text), one pass
    over them (rows that do not fit, pairs with a blank side, pairs over the length limits, a sample
    of training pairs) and the two vectorizers fitted on that sample, as a `Pairs`."""
    d, t = recipe["data"], recipe["text"]
    source = stream.Source(
        d["source"],
        {"source": d["source_column"], "target": d["target_column"]},
        texts=("source", "target"),
        max_words={"source": d["max_source_words"], "target": d["max_target_words"]},
        fractions=tuple(d["split"]),
        seed=d["seed"],
    )
    start = time.perf_counter()
    profile = source.profile(t["vocab_sample_rows"], d["max_bad_rows"], log)
    seconds = time.perf_counter() - start
    skipped = {"blank": sum(profile.empty), "too_long": sum(profile.too_long)}
    for name, size in zip(stream.SPLITS, profile.sizes):
        if not size:
            raise UserError(
                f"{d['source']}: the {name} split has no pair within the length limits; "
                f"the data has too few rows ({skipped['blank']} blank, {skipped['too_long']} too long)"
            )
    vectorizers = {
        k: text.fit_vectorizer(profile.samples[k], t[f"{k}_vocab"], standardize=text.standardize_words)
        for k in ("source", "target")
    }
    log(
        f"data: {d['source']} ({d['source_column']} → {d['target_column']}): "
        + ", ".join(f"{k} {v}" for k, v in zip(stream.SPLITS, profile.sizes))
        + f" pairs ({profile.rows} rows read in {seconds:.1f} s, {profile.rows / max(seconds, 1e-9):,.0f} rows/s)"
        + f"; skipped {skipped['blank']} with a blank side, {skipped['too_long']} over "
        f"{d['max_source_words']} source / {d['max_target_words']} target words; vocabularies "
        f"{vectorizers['source'].vocabulary_size()} source, {vectorizers['target'].vocabulary_size()} target"
        f" from {len(profile.sample)} training pairs"
    )
    return Pairs(source, profile, vectorizers, recipe, skipped)


class Pairs:
    """A streamed source of pairs ready to train on: `examples(split)` is a tf.data pipeline of
    teacher-forced examples, tokenized in parallel inside the pipeline; small splits (up to
    data.cache_rows pairs) are kept in memory after their first pass. `texts(split)` gives a
    split's raw pairs, read again from the source batch by batch."""

    def __init__(self, source, profile, vectorizers, recipe, skipped):
        self.source, self.profile, self.vectorizers, self.skipped = source, profile, vectorizers, skipped
        self.max_tokens, self.cache_rows = recipe["text"]["max_tokens"], recipe["data"]["cache_rows"]
        self.start_id = vectorizers["target"].vocabulary_size()  # the ids past the target words
        self.end_id = self.start_id + 1
        d = recipe["data"]
        self.source_name, self.columns = d["source"], [d["source_column"], d["target_column"]]

    def summary(self):
        """What the export's metadata says of the data."""
        return {
            "source": self.source_name,
            "columns": self.columns,
            "sizes": dict(zip(stream.SPLITS, self.profile.sizes)),
            "skipped": self.skipped,
            "vocabulary": {k: v.vocabulary_size() for k, v in self.vectorizers.items()},
        }

    def size(self, split):
        return self.profile.sizes[stream.SPLITS.index(split)]

    def examples(self, split):
        vectorizers, ids = self.vectorizers, (self.start_id, self.end_id, self.max_tokens)
        index = stream.SPLITS.index(split)
        return stream.dataset(
            self.source,
            index,
            lambda columns: teacher_forcing(vectorizers, columns, *ids),
            cache=self.size(split) <= self.cache_rows,
        )

    def texts(self, split):
        """{"source": [...], "target": [...]}: the raw texts of a split's pairs, in file order."""
        pairs = {"source": [], "target": []}
        for columns in self.source.batches(stream.SPLITS.index(split)):
            for name, column in zip(self.source.names, columns):
                pairs[name].extend(column)
        return pairs


def teacher_forcing(vectorizers, pairs, start_id, end_id, max_tokens):
    """(source ids cut to `max_tokens` as serving cuts them, decoder input = start + target),
    decoder output = target + end; all ragged, of a batch of string pairs {"source", "target"}."""
    source = tf.RaggedTensor.from_tensor(vectorizers["source"](pairs["source"]), padding=0)[:, :max_tokens]
    target = tf.cast(tf.RaggedTensor.from_tensor(vectorizers["target"](pairs["target"]), padding=0), tf.int32)
    rows = target.nrows()
    start = tf.RaggedTensor.from_row_lengths(tf.fill([rows], start_id), tf.ones([rows], tf.int64))
    end = tf.RaggedTensor.from_row_lengths(tf.fill([rows], end_id), tf.ones([rows], tf.int64))
    return (tf.cast(source, tf.int32), tf.concat([start, target], axis=1)), tf.concat([target, end], axis=1)


def unigram_loss(data):
    """Cross-entropy of predicting every target word (and each sentence's end) by its frequency
    alone, in the sample of training pairs."""
    ids = data.vectorizers["target"](tf.constant(data.profile.samples["target"]))
    counts = np.bincount(ids.numpy().ravel(), minlength=data.end_id + 1)
    counts[0], counts[data.end_id] = 0, ids.shape[0]  # padding is no word; every sentence ends
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())
