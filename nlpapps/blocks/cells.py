"""The classic recurrent cells written out equation by equation.

Each cell is a Keras 3 layer for ``keras.layers.RNN``: it declares ``state_size``
and ``output_size``, and ``call(x_t, states)`` returns ``(h_t, new_states)``.
Weights use the same layout as Keras' own layers so they can be copied across
and checked against them (see tests/test_blocks.py).
"""

import keras
from keras import ops


def _forget_bias_init(units):
    """Bias initialiser for LSTM gates (i, f, c, o): forget gate 1, the rest 0.

    A forget bias of 1 keeps the cell state flowing early in training
    (Jozefowicz et al. 2015); Keras calls this ``unit_forget_bias``.
    """

    def init(shape, dtype=None):
        return ops.concatenate(
            [
                ops.zeros((units,), dtype=dtype),
                ops.ones((units,), dtype=dtype),
                ops.zeros((2 * units,), dtype=dtype),
            ]
        )

    return init


def _first_state(states):
    # keras.layers.RNN hands a one-state cell either [h] or h.
    return states[0] if isinstance(states, (list, tuple)) else states


@keras.saving.register_keras_serializable(package="nlpapps")
class LSTMCell(keras.layers.Layer):
    """Long short-term memory (Hochreiter & Schmidhuber 1997, with forget gate).

    f = σ(W_f x + U_f h + b_f)      i = σ(W_i x + U_i h + b_i)
    C̃ = tanh(W_c x + U_c h + b_c)   o = σ(W_o x + U_o h + b_o)
    C_t = f·C_{t-1} + i·C̃           h_t = o·tanh(C_t)

    Weights are stacked in Keras' gate order i, f, c, o: ``kernel`` (input_dim,
    4*units), ``recurrent_kernel`` (units, 4*units), ``bias`` (4*units), so they
    copy 1:1 from ``keras.layers.LSTM``.
    """

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.state_size = [self.units, self.units]  # [h, C]
        self.output_size = self.units

    def build(self, input_shape):
        n = self.units
        self.kernel = self.add_weight(shape=(input_shape[-1], 4 * n), initializer="glorot_uniform", name="kernel")
        # Orthogonal recurrent weights keep repeated multiplication by U well conditioned.
        self.recurrent_kernel = self.add_weight(shape=(n, 4 * n), initializer="orthogonal", name="recurrent_kernel")
        self.bias = self.add_weight(shape=(4 * n,), initializer=_forget_bias_init(n), name="bias")

    def _preactivations(self, x, h):
        # One matmul per input for all four gates, then split: i, f, c, o.
        z = ops.matmul(x, self.kernel) + ops.matmul(h, self.recurrent_kernel) + self.bias
        return ops.split(z, 4, axis=-1)

    def call(self, inputs, states, training=False):
        h_prev, c_prev = states
        a_i, a_f, a_c, a_o = self._preactivations(inputs, h_prev)
        i = ops.sigmoid(a_i)
        f = ops.sigmoid(a_f)
        c_tilde = ops.tanh(a_c)
        o = ops.sigmoid(a_o)
        c = f * c_prev + i * c_tilde
        h = o * ops.tanh(c)
        return h, [h, c]

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="nlpapps")
class PeepholeLSTMCell(LSTMCell):
    """LSTM with diagonal peephole connections (Gers, Schraudolph & Schmidhuber 2000).

    The gates also look at the cell state, which helps with precise timing:
    i and f see C_{t-1} (p_i ⊙ C_{t-1}, p_f ⊙ C_{t-1}); o sees the new C_t (p_o ⊙ C_t).
    ``peephole_weights`` has shape (3, units), rows i, f, o. They start at zero,
    so a fresh cell is exactly an LSTMCell and learns how much to peek.
    """

    def __init__(self, units, peephole_initializer="zeros", **kwargs):
        super().__init__(units, **kwargs)
        self.peephole_initializer = keras.initializers.get(peephole_initializer)

    def build(self, input_shape):
        super().build(input_shape)
        self.peephole_weights = self.add_weight(
            shape=(3, self.units), initializer=self.peephole_initializer, name="peephole_weights"
        )

    def call(self, inputs, states, training=False):
        h_prev, c_prev = states
        a_i, a_f, a_c, a_o = self._preactivations(inputs, h_prev)
        p_i, p_f, p_o = self.peephole_weights[0], self.peephole_weights[1], self.peephole_weights[2]
        i = ops.sigmoid(a_i + p_i * c_prev)
        f = ops.sigmoid(a_f + p_f * c_prev)
        c = f * c_prev + i * ops.tanh(a_c)
        o = ops.sigmoid(a_o + p_o * c)  # output gate peeks at the *new* state
        h = o * ops.tanh(c)
        return h, [h, c]

    def get_config(self):
        return {
            **super().get_config(),
            "peephole_initializer": keras.initializers.serialize(self.peephole_initializer),
        }


@keras.saving.register_keras_serializable(package="nlpapps")
class GRUCell(keras.layers.Layer):
    """Gated recurrent unit (Cho et al. 2014), reset applied before U_h.

    r = σ(W_r x + U_r h + b_r)      z = σ(W_z x + U_z h + b_z)
    h̃ = tanh(W_h x + U_h (r·h_{t-1}) + b_h)
    h_t = z·h̃ + (1 − z)·h_{t-1}

    Layout matches ``keras.layers.GRU(reset_after=False)``: ``kernel``
    (input_dim, 3*units) and ``recurrent_kernel`` (units, 3*units) in order z, r, h,
    ``bias`` (3*units). Keras' z is our 1 − z (Keras: h_t = z·h_{t-1} + (1−z)·h̃),
    so Keras weights copy over with the z columns negated, since σ(−a) = 1 − σ(a).
    """

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.state_size = self.units
        self.output_size = self.units

    def build(self, input_shape):
        n = self.units
        self.kernel = self.add_weight(shape=(input_shape[-1], 3 * n), initializer="glorot_uniform", name="kernel")
        self.recurrent_kernel = self.add_weight(shape=(n, 3 * n), initializer="orthogonal", name="recurrent_kernel")
        self.bias = self.add_weight(shape=(3 * n,), initializer="zeros", name="bias")

    def call(self, inputs, states, training=False):
        h_prev = _first_state(states)
        n = self.units
        x_z, x_r, x_h = ops.split(ops.matmul(inputs, self.kernel) + self.bias, 3, axis=-1)
        # z and r share one matmul; the candidate needs r first, so U_h is applied separately.
        h_zr = ops.matmul(h_prev, self.recurrent_kernel[:, : 2 * n])
        z = ops.sigmoid(x_z + h_zr[:, :n])
        r = ops.sigmoid(x_r + h_zr[:, n:])
        h_tilde = ops.tanh(x_h + ops.matmul(r * h_prev, self.recurrent_kernel[:, 2 * n :]))
        h = z * h_tilde + (1.0 - z) * h_prev
        return h, [h]

    def get_config(self):
        return {**super().get_config(), "units": self.units}
