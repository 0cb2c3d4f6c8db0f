"""The VADER lexicon (vaderSentiment, Hutto & Gilbert 2014, MIT): its analyzer is a baseline in the
run's table; its word valences are a prior the model reads beside each word's embedding, and its
rules (negation, boosters, "but", "!" and "?") give a lexicon score per text that the heads read
beside the recurrent summary (`Rules`, TensorFlow ops on token ids, inside the export)."""

import functools

import keras
import numpy as np
import tensorflow as tf

from nlpapps.data import text

VALENCE_RANGE = 4.0  # VADER rates words from -4 (most negative) to +4 (most positive)


@functools.cache
def analyzer():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def compound(texts):
    """VADER's compound score of each text, on -1 … 1 (0: no rated word, or they cancel out)."""
    scores = analyzer().polarity_scores
    return np.array([scores(t)["compound"] for t in texts], dtype=float)


def valences(vocabulary):
    """Each vocabulary token's VADER valence on -1 … 1, 0 for a token the lexicon does not rate."""
    lexicon = analyzer().lexicon
    return np.array([lexicon.get(token, 0.0) / VALENCE_RANGE for token in vocabulary], dtype=np.float32)


SPECIAL = ("but", "!", "?", "no", "kind", "of")  # tokens the rules treat apart, coded 1, 2, ... in the table
EMOTICON_TOKENS = 3  # emoticons the vectorizer splits into up to this many tokens are matched as sequences


def rules_of(vectorizer, m):
    """The `Rules` tables for the vectorizer's vocabulary where model.lexicon is "vader"; else None."""
    return rule_tables(vectorizer.get_vocabulary(), text.standardize) if m["lexicon"] == "vader" else None


def rule_tables(vocabulary, standardize):
    """The tables of `Rules` for a vocabulary: ([vocab, 5] float32, per token: VADER valence
    (-4 … 4; 0 for boosters and unrated tokens), in the lexicon (1/0), booster increment (±0.293,
    0), negation (1/0), its code in SPECIAL (0: none)), and [emoticons, 4] float32: the lexicon's
    emoticons that the vectorizer's `standardize` splits into 2-3 vocabulary tokens: their ids (-1
    before a 2-token one) and valence."""
    from vaderSentiment import vaderSentiment as v

    lexicon, boosters, negations = analyzer().lexicon, v.BOOSTER_DICT, set(v.NEGATE)
    vocabulary = [str(w) for w in vocabulary]
    table = np.zeros((len(vocabulary), 5), np.float32)
    for i, token in enumerate(vocabulary):
        rated = token in lexicon and token not in boosters
        table[i] = (
            lexicon[token] if rated else 0.0,
            token in lexicon,
            boosters.get(token, 0.0),
            token in negations or "n't" in token,
            SPECIAL.index(token) + 1 if token in SPECIAL else 0,
        )
    index = {w: i for i, w in enumerate(vocabulary)}
    emoticons = []
    split = standardize(tf.constant(list(lexicon))).numpy()
    for tokens, valence in zip((t.decode().split() for t in split), lexicon.values()):
        if 2 <= len(tokens) <= EMOTICON_TOKENS and all(t in index for t in tokens):
            ids = [-1] * (EMOTICON_TOKENS - len(tokens)) + [index[t] for t in tokens]
            emoticons.append((*ids, valence))
    return table, np.array(emoticons, np.float32).reshape(-1, EMOTICON_TOKENS + 1)


def _before(t, k, fill):
    """`t` [batch, steps] shifted k steps later: each step sees the value k steps before it."""
    return tf.pad(t, [[0, 0], [k, 0]], constant_values=fill)[:, : tf.shape(t)[1]]


def _after(t):
    """`t` [batch, steps] shifted one step earlier: each step sees the next step's value (0 at the end)."""
    return tf.pad(t, [[0, 0], [0, 1]])[:, 1:]


@keras.saving.register_keras_serializable(package="nlpapps")
class Rules(keras.layers.Layer):
    """VADER's sentiment rules on token ids: each rated word's valence (and each emoticon's, at its
    last token), raised or lowered by the boosters among the three tokens before it (x1, 0.95,
    0.9) and flipped (x -0.74) by each negation among them, or right after "no" ("no" then weighs 0),
    "kind of" unrated; halved before the first "but" and x1.5 after it; summed, pushed away from 0
    by "!" (0.292 each, up to 4) and "?" (2-3: 0.18 each, more: 0.96), and normalised as VADER's
    compound s / sqrt(s² + 15). Gives [batch, 3]: the compound, and the same normalisation of the
    positive and of the negative valences alone. The tables (`rule_tables`) are fixed weights."""

    def __init__(self, vocab_size, emoticons=0, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size, self.emoticons = vocab_size, emoticons
        self.table = self.add_weight(shape=(vocab_size, 5), initializer="zeros", trainable=False, name="table")
        self.faces = self.add_weight(
            shape=(emoticons, EMOTICON_TOKENS + 1), initializer="zeros", trainable=False, name="emoticons"
        )

    def _emoticons(self, ids):
        """[batch, steps]: the valence of an emoticon ending at each step, 0 elsewhere."""
        faces = tf.convert_to_tensor(self.faces)
        match = tf.ones(tf.concat([tf.shape(ids), tf.shape(faces)[:1]], 0), tf.bool)
        for k in range(EMOTICON_TOKENS):
            want = tf.cast(faces[:, EMOTICON_TOKENS - 1 - k], tf.int32)
            match &= (want < 0) | tf.equal(_before(ids, k, -2)[..., None], want)
        return tf.reduce_sum(tf.cast(match, tf.float32) * faces[:, -1], axis=-1)

    def call(self, ids):
        ids = tf.cast(ids, tf.int32)
        valence, rated, booster, negation, special = tf.unstack(
            tf.gather(tf.convert_to_tensor(self.table), ids), axis=-1
        )
        is_ = {w: tf.cast(special == i + 1, tf.float32) for i, w in enumerate(SPECIAL)}
        after_no = _before(is_["no"], 1, 0.0)
        valence *= (1.0 - is_["no"] * _after(rated)) * (1.0 - 1.74 * after_no)
        valence *= 1.0 - is_["kind"] * _after(is_["of"])
        valence += self._emoticons(ids)
        word, sign = tf.cast(valence != 0, tf.float32), tf.where(valence < 0, -1.0, 1.0)
        for k, damping in ((1, 1.0), (2, 0.95), (3, 0.9)):
            free = word * (1.0 - _before(rated, k, 1.0))  # the k-th token before is not itself rated
            valence += free * _before(booster, k, 0.0) * damping * sign
            valence *= 1.0 - free * _before(negation, k, 0.0) * 1.74
        seen_but, has_but = tf.cumsum(is_["but"], axis=1), tf.reduce_max(is_["but"], axis=1, keepdims=True)
        valence *= tf.where(has_but > 0, tf.where(seen_but > 0, 1.5, 0.5), 1.0)
        s = tf.reduce_sum(valence, axis=1)
        exclaim, question = tf.reduce_sum(is_["!"], axis=1), tf.reduce_sum(is_["?"], axis=1)
        s += tf.sign(s) * (
            tf.minimum(exclaim, 4.0) * 0.292
            + tf.where(question > 1, tf.where(question <= 3, question * 0.18, 0.96), 0.0)
        )
        parts = [s, tf.reduce_sum(tf.nn.relu(valence), axis=1), -tf.reduce_sum(tf.nn.relu(-valence), axis=1)]
        return tf.stack([p / tf.sqrt(p * p + 15.0) for p in parts], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 3)

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size, "emoticons": self.emoticons}
