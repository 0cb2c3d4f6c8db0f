"""The text encoder the many-to-one tasks share: token ids → embedding (pretrained vectors where the
recipe names them, and a fixed per-word prior beside it where the task has one) → recurrent block →
one vector per text."""

from dataclasses import dataclass

import keras
import numpy as np

from nlpapps.blocks import recurrent_stack
from nlpapps.data import vectors


@dataclass
class Words:
    """What the encoder knows of each vocabulary word before training: `vectors` [vocab, dim], the
    embedding's start (None: random, model.embedding_dim wide), kept as they are unless
    `train_vectors`; `prior` [vocab], one fixed number per word read beside its embedding (None:
    none)."""

    vectors: np.ndarray | None = None
    train_vectors: bool = True
    prior: np.ndarray | None = None


def words_of(vectorizer, m, log, prior=None):
    """`Words` for the vectorizer's vocabulary as the recipe's model section asks (model.vectors,
    model.train_vectors), with the task's `prior(vocabulary)` if any."""
    vocabulary = [str(w) for w in vectorizer.get_vocabulary()]
    words = Words(prior=prior(vocabulary) if prior else None)
    if m["vectors"] != "none":
        words.vectors, found = vectors.matrix(m["vectors"], vocabulary, seed=0)
        words.train_vectors = m["train_vectors"]
        how = "fine-tuned" if words.train_vectors else "kept fixed"
        log(f"embedding: {m['vectors']} vectors for {found} of {len(vocabulary)} vocabulary tokens, {how}")
    return words


def encoder(vocab_size, m, words=None):
    """Token ids → embedding → shared recurrent block → one vector per text."""
    words = words or Words()
    ids = keras.Input((None,), dtype="int32", name="token_ids")
    pretrained = words.vectors is not None
    dim = words.vectors.shape[1] if pretrained else m["embedding_dim"]
    embedding = keras.layers.Embedding(
        vocab_size, dim, mask_zero=True, trainable=words.train_vectors or not pretrained, name="embedding"
    )
    x = embedding(ids)
    if pretrained:
        embedding.embeddings.assign(words.vectors)
    # Whole embedding channels are dropped, the same ones at every step of a text: a dropped feature
    # cannot be read from the neighbouring words instead, as it could with plain dropout.
    x = keras.layers.SpatialDropout1D(m["embedding_dropout"], name="embedding_dropout")(x)
    if words.prior is not None:  # a lookup table in the graph: one fixed number per token id, masked
        # like the embedding (Concatenate would otherwise take a missing mask for all steps real)
        table = keras.layers.Embedding(vocab_size, 1, mask_zero=True, trainable=False, name="prior")
        prior = table(ids)
        table.embeddings.assign(np.asarray(words.prior, np.float32)[:, None])
        x = keras.layers.Concatenate(name="with_prior")([x, prior])
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
