"""The pairs, their subword vocabularies and the teacher-forced examples the model trains on."""

import re
import time

import numpy as np
import tensorflow as tf

from nlpapps.data import stream
from nlpapps.errors import UserError
from nlpapps.tasks.translate import wordpiece

WORD = re.compile(r"\w+")


def prepare(recipe, log):
    """The pairs as a stream (`stream.Source`, split by a seeded hash of the source text), one pass
    over them (rows that do not fit, pairs with a blank side, pairs over the length limits, a sample
    of training pairs) and a WordPiece tokenizer per side learned from that sample, as a `Pairs`."""
    d, t = recipe["data"], recipe["text"]
    source = pair_source(d)
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
    tokenizers = {
        k: wordpiece.WordPiece(wordpiece.learn(profile.samples[k], t[f"{k}_vocab"]), name=f"{k}_wordpiece")
        for k in ("source", "target")
    }
    log(
        f"data: {d['source']} ({d['source_column']} → {d['target_column']}): "
        + ", ".join(f"{k} {v}" for k, v in zip(stream.SPLITS, profile.sizes))
        + f" pairs ({profile.rows} rows read in {seconds:.1f} s, {profile.rows / max(seconds, 1e-9):,.0f} rows/s)"
        + f"; skipped {skipped['blank']} with a blank side, {skipped['too_long']} over "
        f"{d['max_source_words']} source / {d['max_target_words']} target words; WordPiece vocabularies "
        f"{tokenizers['source'].vocabulary_size()} source, {tokenizers['target'].vocabulary_size()} target pieces"
        f" from {len(profile.sample)} training pairs"
    )
    return Pairs(source, profile, tokenizers, recipe, skipped)


def pair_source(d):
    """The recipe's [data] pairs as a `stream.Source` with columns "source" and "target"."""
    return stream.Source(
        d["source"],
        {"source": d["source_column"], "target": d["target_column"]},
        texts=("source", "target"),
        max_words={"source": d["max_source_words"], "target": d["max_target_words"]},
        fractions=tuple(d["split"]),
        seed=d["seed"],
    )


class Pairs:
    """A streamed source of pairs ready to train on: `examples(split)` is a tf.data pipeline of
    teacher-forced examples, tokenized in parallel inside the pipeline; small splits (up to
    data.cache_rows pairs) are kept in memory after their first pass. `texts(split)` gives a
    split's raw pairs, read again from the source batch by batch."""

    def __init__(self, source, profile, tokenizers, recipe, skipped):
        self.source, self.profile, self.tokenizers, self.skipped = source, profile, tokenizers, skipped
        self.max_tokens, self.cache_rows = recipe["text"]["max_tokens"], recipe["data"]["cache_rows"]
        d = recipe["data"]
        # the words (runs of letters and digits) of the training sample's sources
        self.known_words = {w for s in profile.samples["source"] for w in WORD.findall(s)}
        self.source_name, self.columns = d["source"], [d["source_column"], d["target_column"]]

    def summary(self):
        """What the export's metadata says of the data."""
        return {
            "source": self.source_name,
            "columns": self.columns,
            "sizes": dict(zip(stream.SPLITS, self.profile.sizes)),
            "skipped": self.skipped,
            "vocabulary": {k: v.vocabulary_size() for k, v in self.tokenizers.items()},
        }

    def size(self, split):
        return self.profile.sizes[stream.SPLITS.index(split)]

    def examples(self, split):
        tokenizers, max_tokens = self.tokenizers, self.max_tokens
        index = stream.SPLITS.index(split)
        return stream.dataset(
            self.source,
            index,
            lambda columns: teacher_forcing(tokenizers, columns, max_tokens),
            cache=self.size(split) <= self.cache_rows,
        )


def teacher_forcing(tokenizers, pairs, max_tokens):
    """(source piece ids cut to `max_tokens` as serving cuts them, decoder input = start + target),
    decoder output = target + end; all ragged, of a batch of string pairs {"source", "target"}."""
    source = tokenizers["source"](pairs["source"])[:, :max_tokens]
    target = tokenizers["target"](pairs["target"])
    rows = target.nrows()
    start = tf.RaggedTensor.from_row_lengths(tf.fill([rows], wordpiece.START), tf.ones([rows], tf.int64))
    end = tf.RaggedTensor.from_row_lengths(tf.fill([rows], wordpiece.END), tf.ones([rows], tf.int64))
    return (source, tf.concat([start, target], axis=1)), tf.concat([target, end], axis=1)


def unigram_loss(data):
    """Cross-entropy of predicting every target piece (and each sentence's end) by its frequency
    alone, in the sample of training pairs."""
    ids = data.tokenizers["target"](tf.constant(data.profile.samples["target"]))
    counts = np.bincount(ids.flat_values.numpy(), minlength=data.tokenizers["target"].vocabulary_size())
    counts[wordpiece.END] = int(ids.nrows())  # every sentence ends
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())
