"""Text to token ids, and the tf.data pipeline that trains on them.

Vectorization happens once, outside the model; batches are grouped by length so that a batch of
short texts is not padded to the longest text of the corpus.
"""

import keras
import numpy as np
import tensorflow as tf

from nlpapps.data.sources import is_number
from nlpapps.errors import UserError

AUTOTUNE = tf.data.AUTOTUNE


def drop_empty(texts, *arrays):
    """Texts with no word characters are skipped; returns the kept rows and how many were dropped."""
    keep = np.array([bool(str(t).strip()) for t in texts], dtype=bool)
    return (texts[keep], *(a[keep] for a in arrays)), int((~keep).sum())


def require_text(texts, column):
    """Refuse a text column that is numbers, judged from all of it (not its first rows)."""
    numeric = sum(is_number(t) for t in texts)
    if numeric > 0.9 * len(texts):
        raise UserError(f"text column {column!r} holds numbers, not text; pick another with --text-column")


@keras.saving.register_keras_serializable(package="nlpapps")
def standardize(text):
    """Lower-case, and make punctuation its own token: '!', '?' and ':)' carry meaning in short
    texts, so they are kept rather than stripped as Keras' default does. Any bytes are accepted:
    invalid UTF-8 is replaced, so a served model never fails on its input."""
    text = tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace")
    lowered = tf.strings.lower(text, encoding="utf-8")
    return tf.strings.regex_replace(lowered, r"([^\pL\pN\s'])", r" \1 ")


@keras.saving.register_keras_serializable(package="nlpapps")
def standardize_digits(text):
    """`standardize`, and numbers read by their shape: a run of digits is its own token with every
    digit 0, so that phone numbers, prices and codes of one length share a token (08452810075 and
    09061701461 both become 00000000000) instead of each being a word seen once."""
    text = tf.strings.regex_replace(standardize(text), r"(\pN+)", r" \1 ")
    return tf.strings.regex_replace(text, r"\pN", "0")


@keras.saving.register_keras_serializable(package="nlpapps")
def standardize_words(text):
    """`standardize`, and apostrophes their own token too: French elisions (l'eau, qu'il) and
    English clitics (god's, don't) then share the word's token instead of multiplying the
    vocabulary. `detokenize` puts them back together."""
    text = tf.strings.regex_replace(standardize(text), "\u2019", "'")
    return tf.strings.regex_replace(text, "'", " ' ")


# Spaces that tokenization added and written text does not have: none before closing punctuation,
# none after opening brackets, none around apostrophes and hyphens.
_DETOKENIZE = (
    (r"\s+", " "),
    (r" ([.,;:!?)\]}»%])", r"\1"),
    (r"([(\[{«¿¡]) ", r"\1"),
    (r" ?' ?", "'"),
    (r" ?- ?", "-"),
    (r'" ([^"]*?) "', r'"\1"'),
    (r"^ | $", ""),
)


def detokenize(joined):
    """Tokens joined by spaces → readable text, with TensorFlow string ops only."""
    for pattern, rewrite in _DETOKENIZE:
        joined = tf.strings.regex_replace(joined, pattern, rewrite)
    return joined


def fit_vectorizer(texts, vocab_size, ngrams=1, standardize=standardize, extra=()):
    """A TextVectorization layer whose vocabulary comes from the training texts. With ngrams > 1
    a text's words are followed by its word bigrams (… up to n-grams), each one token. The `extra`
    words follow the training texts' `vocab_size` tokens (those that a text can become: words of
    letters and digits, single punctuation marks)."""
    ngrams = ngrams if ngrams > 1 else None
    vectorizer = keras.layers.TextVectorization(
        max_tokens=vocab_size, output_mode="int", standardize=standardize, ngrams=ngrams
    )
    vectorizer.adapt(tf.data.Dataset.from_tensor_slices(list(texts)).batch(1024))
    if not extra:
        return vectorizer
    vocabulary = [str(w) for w in vectorizer.get_vocabulary()]
    known = set(vocabulary)
    vocabulary += [w for w in extra if w not in known and (w.isalnum() or len(w) == 1)]
    return keras.layers.TextVectorization(
        output_mode="int", standardize=standardize, ngrams=ngrams, vocabulary=vocabulary
    )


def token_ids(vectorizer, texts, max_tokens):
    """Ragged token ids of every text, cut to `max_tokens`."""
    ids = vectorizer(tf.constant(list(texts)))
    return tf.RaggedTensor.from_tensor(ids, padding=0)[:, :max_tokens]


def bucket_boundaries(max_tokens):
    """Length buckets growing by ~1.5×: little padding, few distinct batch shapes."""
    edges, edge = [], 4
    while edge < max_tokens:
        edges.append(edge)
        edge = int(edge * 1.5) + 1
    return edges + [max_tokens + 1]


def serving_edges(max_tokens):
    """The lengths a served batch of token ids is padded to: the bucket edges, the last max_tokens."""
    return [edge for edge in bucket_boundaries(max_tokens) if edge < max_tokens] + [max_tokens]


def pipeline(ids, targets, *, batch_size, shuffle, seed, bucketed=True, pad_to=None, epoch=None):
    """(token ids, targets) batches of in-memory ragged ids: see `batches`.
    `ids` may be a tuple of ragged id tensors (a source and a shifted target, say): batches are
    then bucketed by the first one's length and each is padded to its own longest row; ragged
    targets are padded the same way."""
    first = tf.nest.flatten(ids)[0]
    # Slices of a ragged tensor come out ragged-typed; the map makes them plain 1-D tensors.
    ds = tf.data.Dataset.from_tensor_slices((ids, targets))
    ds = ds.map(
        lambda x, y: (tf.nest.map_structure(lambda t: tf.cast(t, tf.int32), x), tf.nest.map_structure(_plain, y)),
        num_parallel_calls=AUTOTUNE,
    ).cache()
    return batches(
        ds,
        batch_size=batch_size,
        shuffle=int(first.nrows()) if shuffle else 0,
        seed=seed,
        max_length=int(first.row_lengths().numpy().max()),
        bucketed=bucketed,
        pad_to=pad_to,
        epoch=epoch,
    )


def batches(ds, *, batch_size, shuffle, seed, max_length, bucketed=True, pad_to=None, epoch=None, full_only=False):
    """Batches of a dataset of examples whose first part is token ids (or a tuple of them), with
    lengths up to `max_length`: bucketed by length, or all padded to `pad_to` tokens. `shuffle` is
    the shuffle buffer in examples (0: no shuffle; the split's size shuffles it whole). With `epoch`,
    the shuffled order is that epoch's own, fixed by (seed, epoch) alone, so a resumed run sees the
    same order as an unbroken one; without, the order changes at each iteration. With `full_only`,
    a bucket's last, partial batch is left out: otherwise the end of every pass brings small batches
    of whatever lengths are rare, each weighing in one optimizer step as much as a full batch (a few
    texts of one character, all of one kind, can teach a model to start every such text with it)."""
    if shuffle and epoch is not None:
        ds = ds.shuffle(shuffle, seed=epoch_seed(seed, epoch), reshuffle_each_iteration=False)
    elif shuffle:
        ds = ds.shuffle(shuffle, seed=seed, reshuffle_each_iteration=True)
    if bucketed:
        edges = bucket_boundaries(max_length)
        ds = ds.bucket_by_sequence_length(
            lambda x, *_: tf.shape(tf.nest.flatten(x)[0])[0],
            edges,
            [batch_size] * (len(edges) + 1),
            pad_to_bucket_boundary=False,
            drop_remainder=full_only,
        )
    else:
        shapes = tf.nest.map_structure(lambda spec: spec.shape, ds.element_spec[1:])
        ds = ds.padded_batch(batch_size, padded_shapes=([pad_to], *shapes))
    return ds.prefetch(AUTOTUNE)


def epoch_seed(seed, epoch):
    """A shuffle seed for one epoch, from the recipe's seed and the epoch number alone."""
    return (int(seed) * 1_000_003 + int(epoch)) % 2**31


def _plain(t):
    """A ragged slice (ragged_rank 0) as a plain tensor; other targets as they are."""
    return tf.identity(t) if isinstance(t, tf.RaggedTensor) else t


@keras.saving.register_keras_serializable(package="nlpapps")
class ServingIds(keras.layers.Layer):
    """Token ids as the model saw them in training: cut to `max_tokens`, and at least one column,
    since a batch of empty texts vectorizes to none and a recurrent layer needs one step."""

    def __init__(self, max_tokens, **kwargs):
        super().__init__(**kwargs)
        self.max_tokens = max_tokens

    def call(self, ids):
        ids = ids[:, : self.max_tokens]
        return tf.pad(ids, [[0, 0], [0, tf.maximum(0, 1 - tf.shape(ids)[1])]])

    def get_config(self):
        return {**super().get_config(), "max_tokens": self.max_tokens}


@keras.saving.register_keras_serializable(package="nlpapps")
class NoWords(keras.layers.Layer):
    """A text without a single token (empty, or only spaces) has nothing to judge: the model's
    answer to padding alone, often confident, becomes no answer: [batch, classes] probabilities
    each class equally likely, a [batch, 1] regression 0 (a sentiment's neutral middle).
    Called on [token ids, the model's outputs]."""

    def call(self, inputs):
        ids, result = inputs
        empty = tf.math.count_nonzero(ids, axis=1, keepdims=True) == 0

        def neutral(t):
            blank = tf.fill(tf.shape(t), 1.0 / t.shape[-1]) if t.shape[-1] > 1 else tf.zeros_like(t)
            return tf.where(empty, blank, t)

        return tf.nest.map_structure(neutral, result)
