"""The text encoder the many-to-one tasks share: token ids → embedding → recurrent block → one
vector per text."""

import keras

from nlpapps.blocks import recurrent_stack


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
