"""Attention of a decoder over the encoder's outputs, with the two classic scores.

additive (Bahdanau et al. 2015):  score(q, k) = vᵀ tanh(W_q q + W_k k)
dot (Luong et al. 2015, "general"): score(q, k) = qᵀ W k

The weights are a softmax over the source steps the mask keeps; the context is the weighted sum of
the encoder outputs. Padded source steps get no weight, so a batch's padding never changes a result.
"""

import keras
from keras import ops

SCORES = ("additive", "dot")


@keras.saving.register_keras_serializable(package="nlpapps")
class Attention(keras.layers.Layer):
    """Call: ``attention([query, values], mask=[query_mask, values_mask])`` with query
    (batch, T, Dq) and values (batch, S, Dv); returns (context (batch, T, Dv), weights
    (batch, T, S)). Inside a Keras model the masks come from the layers before it."""

    def __init__(self, score="additive", units=128, **kwargs):
        super().__init__(**kwargs)
        if score not in SCORES:
            raise ValueError(f"unknown attention score {score!r}; choose one of {', '.join(SCORES)}")
        self.score = score
        self.units = int(units)
        self.supports_masking = True

    def build(self, input_shape):
        query_shape, values_shape = input_shape
        dq, dv = query_shape[-1], values_shape[-1]
        if self.score == "additive":
            self.query_kernel = self.add_weight(
                shape=(dq, self.units), initializer="glorot_uniform", name="query_kernel"
            )
            self.key_kernel = self.add_weight(shape=(dv, self.units), initializer="glorot_uniform", name="key_kernel")
            self.v = self.add_weight(shape=(self.units,), initializer="glorot_uniform", name="v")
        else:
            self.kernel = self.add_weight(shape=(dq, dv), initializer="glorot_uniform", name="kernel")

    def keys(self, values):
        """The values' part of the score, computed once per source: a decoder that steps one token
        at a time passes it back in through `call(..., keys=)`."""
        return ops.matmul(values, self.key_kernel) if self.score == "additive" else values

    def call(self, inputs, mask=None, keys=None):
        query, values = inputs
        keys = self.keys(values) if keys is None else keys
        if self.score == "additive":
            hidden = ops.tanh(ops.expand_dims(ops.matmul(query, self.query_kernel), 2) + ops.expand_dims(keys, 1))
            scores = ops.tensordot(hidden, self.v, axes=1)  # (batch, T, S)
        else:
            scores = ops.matmul(ops.matmul(query, self.kernel), ops.transpose(keys, (0, 2, 1)))
        values_mask = mask[1] if mask is not None else None
        if values_mask is not None:
            scores = ops.where(ops.expand_dims(ops.cast(values_mask, "bool"), 1), scores, -1e9)
        weights = ops.softmax(scores, axis=-1)
        return ops.matmul(weights, values), weights

    def compute_mask(self, inputs, mask=None):
        # Both outputs follow the query's time steps.
        query_mask = mask[0] if mask is not None else None
        return [query_mask, query_mask]

    def compute_output_shape(self, input_shape):
        query_shape, values_shape = input_shape
        return (tuple(query_shape[:-1]) + (values_shape[-1],), tuple(query_shape[:-1]) + (values_shape[1],))

    def get_config(self):
        return {**super().get_config(), "score": self.score, "units": self.units}
