"""RecurrentStack: the one place in the project that builds recurrent layers.

Every model asks for "a stack of recurrent layers" through ``recurrent_stack``
so cell type, depth, direction, dropout and residual connections are chosen by
configuration rather than re-implemented per model.
"""

import keras
from keras import ops

from nlpapps.blocks import loops
from nlpapps.blocks.cells import PeepholeLSTMCell

CELLS = ("rnn", "lstm", "gru", "peephole")
POOLINGS = ("last", "max", "mean")
_N_STATES = {"rnn": 1, "lstm": 2, "gru": 1, "peephole": 2}  # [h] or [h, c]


def _recurrent_layer(cell, units, return_sequences, return_state):
    kw = dict(return_sequences=return_sequences, return_state=return_state)
    # Keras' own layers with a leaner loop over time on the CPU (see loops.py).
    if cell == "rnn":
        return loops.SimpleRNN(units, **kw)
    if cell == "lstm":
        return loops.LSTM(units, **kw)
    if cell == "gru":
        return loops.GRU(units, **kw)
    return loops.PeepholeLSTM(PeepholeLSTMCell(units), **kw)


def _pool(x, mask, how):
    """Max or mean over time of the steps the mask keeps: padding must not change the result."""
    if mask is None:
        mask = ops.ones(ops.shape(x)[:2], dtype="bool")
    keep = ops.expand_dims(ops.cast(mask, "bool"), -1)
    if how == "mean":
        weights = ops.cast(keep, x.dtype)
        return ops.sum(x * weights, axis=1) / ops.maximum(ops.sum(weights, axis=1), 1.0)
    # A text with no kept step (all padding) pools to zeros rather than -inf.
    pooled = ops.max(ops.where(keep, x, -1e9), axis=1)
    return ops.where(ops.any(keep, axis=1), pooled, 0.0)


@keras.saving.register_keras_serializable(package="nlpapps")
class RecurrentStack(keras.layers.Layer):
    """``depth`` recurrent layers of one cell type, optionally bidirectional.

    Args:
        cell: one of ``CELLS``. "rnn"/"lstm"/"gru" use Keras' built-in layers with
            a leaner loop over time (``loops.py``: same weights and equations);
            "peephole" runs ``PeepholeLSTMCell`` in ``keras.layers.RNN`` with that loop.
        units: hidden size per direction (bidirectional outputs 2*units).
        depth: number of stacked layers; all but the last return sequences.
        bidirectional: wrap each layer in ``Bidirectional`` (concat merge).
        dropout: rate of the Dropout applied to each layer's output.
        residual: from layer 2 on, add a layer's input to its output when the
            shapes match (i.e. when that layer returns sequences):
            x_{k+1} = x_k + dropout(layer_k(x_k)).
        return_sequences: the last layer returns the full sequence.
        pooling: how a sequence becomes one vector when return_sequences is off:
            "last" (final state), or "max" / "mean" over the unmasked steps of
            the last layer's outputs (often better for classifying a text).
        return_state: also return the last layer's final states as a list
            ([h, c] for lstm/peephole, [h] for rnn/gru). Bidirectional states
            are forward and backward concatenated, so 2*units wide.
        all_states: with return_state, return the final states of every
            layer, layer 1 first, as one flat list; ``initial_state`` then
            seeds every layer from such a list. This is what stepping a stack
            one input at a time needs (a decoder's search, a streaming
            forecast): feed the states it returned back in with the next step.

    Call: ``stack(x, mask=None, initial_state=None, training=None)``. The mask
    (e.g. from ``Embedding(mask_zero=True)``) reaches every recurrent layer so
    padded steps do not change the result. ``initial_state`` seeds the first
    layer (every layer with ``all_states``), e.g. a decoder started from
    encoder states.
    """

    def __init__(
        self,
        cell="lstm",
        units=64,
        depth=1,
        bidirectional=False,
        dropout=0.0,
        residual=False,
        return_sequences=False,
        return_state=False,
        pooling="last",
        all_states=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if cell not in CELLS:
            raise ValueError(f"unknown cell {cell!r}; choose one of rnn, lstm, gru, peephole")
        if int(units) < 1:
            raise ValueError(f"units must be >= 1, got {units!r}")
        if int(depth) < 1:
            raise ValueError(f"depth must be >= 1, got {depth!r}")
        if pooling not in POOLINGS or (pooling != "last" and return_sequences):
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, and 'last' with return_sequences")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.cell = cell
        self.units = int(units)
        self.depth = int(depth)
        self.bidirectional = bool(bidirectional)
        self.dropout = float(dropout)
        self.residual = bool(residual)
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.pooling = pooling
        self.all_states = bool(all_states)
        self.supports_masking = True

        self.rnn_layers = []
        for k in range(self.depth):
            last = k == self.depth - 1
            layer = _recurrent_layer(
                cell,
                self.units,
                return_sequences=self.return_sequences or self.pooling != "last" or not last,
                return_state=self.return_state and (last or self.all_states),
            )
            if self.bidirectional:
                layer = keras.layers.Bidirectional(layer, merge_mode="concat")
            self.rnn_layers.append(layer)
        # Dropout has no weights worth sharing; one layer serves every position.
        self.dropout_layer = keras.layers.Dropout(self.dropout) if self.dropout > 0 else None

    @property
    def states_per_layer(self):
        return _N_STATES[self.cell]

    @property
    def output_width(self):
        return self.units * (2 if self.bidirectional else 1)

    def build(self, input_shape):
        # Build sub-layers explicitly so a reloaded model has its variables
        # before the saved weights are loaded into them.
        shape = tuple(input_shape)
        for layer in self.rnn_layers:
            layer.build(shape)
            shape = shape[:-1] + (self.output_width,)

    def call(self, inputs, mask=None, initial_state=None, training=None):
        if initial_state is not None and self.bidirectional:
            # Our returned bidirectional states are fwd‖bwd concatenations; a
            # backward pass cannot be seeded meaningfully from a state of the
            # past (and a decoder cannot run backwards), so refuse rather than
            # silently split the vector in half.
            raise ValueError("initial_state is only supported when bidirectional=False")
        n = self.states_per_layer
        x, states = inputs, []
        for k, layer in enumerate(self.rnn_layers):
            kwargs = {"mask": mask, "training": training}
            if initial_state is not None and (k == 0 or self.all_states):
                kwargs["initial_state"] = (
                    list(initial_state)[k * n : (k + 1) * n] if self.all_states else list(initial_state)
                )
            y = layer(x, **kwargs)
            if self.return_state and (k == self.depth - 1 or self.all_states):
                y, states = y[0], states + list(y[1:])
            if self.dropout_layer is not None:
                y = self.dropout_layer(y, training=training)
            # Residual only where input and output are both (batch, time, width).
            if self.residual and k > 0 and len(y.shape) == 3:
                y = x + y
            x = y
        if self.pooling != "last":
            x = _pool(x, mask, self.pooling)
        if not self.return_state:
            return x
        if self.bidirectional:
            # Keras returns each layer's fwd states then its bwd states; pair them up per state.
            paired = []
            for k in range(0, len(states), 2 * n):
                layer_states = states[k : k + 2 * n]
                paired += [ops.concatenate([f, b], axis=-1) for f, b in zip(layer_states[:n], layer_states[n:])]
            states = paired
        return x, states

    def step(self, inputs, states):
        """One time step without the layers' loop over time: inputs [batch, features] and every
        layer's states (as ``all_states`` returns them) → (the last layer's output, the new states).
        The same numbers as ``call`` on a one-step sequence, with far fewer operations: what
        streaming one reading at a time needs. Inference only (no dropout); unidirectional."""
        if self.bidirectional:
            raise ValueError("step is only supported when bidirectional=False")
        n, x, new = self.states_per_layer, inputs, []
        for k, layer in enumerate(self.rnn_layers):
            y, layer_states = layer.cell(x, list(states[k * n : (k + 1) * n]), training=False)
            new += list(layer_states) if isinstance(layer_states, (list, tuple)) else [layer_states]
            x = x + y if self.residual and k > 0 else y
        return x, new

    def compute_mask(self, inputs, mask=None):
        # Only the sequence output keeps a time axis to mask; states have none.
        # (Keras pairs this mask with the first flattened output.)
        return mask if self.return_sequences else None

    def get_config(self):
        return {
            **super().get_config(),
            "cell": self.cell,
            "units": self.units,
            "depth": self.depth,
            "bidirectional": self.bidirectional,
            "dropout": self.dropout,
            "residual": self.residual,
            "return_sequences": self.return_sequences,
            "return_state": self.return_state,
            "pooling": self.pooling,
            "all_states": self.all_states,
        }


def recurrent_stack(
    cell="lstm",
    units=64,
    depth=1,
    bidirectional=False,
    dropout=0.0,
    residual=False,
    return_sequences=False,
    return_state=False,
    pooling="last",
    all_states=False,
    name=None,
):
    """Build a ``RecurrentStack``; the entry point models should use."""
    return RecurrentStack(
        cell=cell,
        units=units,
        depth=depth,
        bidirectional=bidirectional,
        dropout=dropout,
        residual=residual,
        return_sequences=return_sequences,
        return_state=return_state,
        pooling=pooling,
        all_states=all_states,
        name=name,
    )
