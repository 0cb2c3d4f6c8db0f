"""Keras' SimpleRNN, LSTM and GRU layers (and a peephole LSTM) with a leaner loop over time.

On a CPU, Keras runs these layers through its generic masked loop, which calls the whole Keras
cell at every step: the input projection x·W is recomputed step by step, and each step carries
many small bookkeeping ops whose per-op cost dominates a small model. The layers here keep
Keras' weights, equations, masking rules and config (so saved models, ``Bidirectional`` and
stepping a cell by hand all work unchanged) and replace only that loop: the input projection
of every step is ONE matmul before the loop, and the loop body holds only the recurrent
matmul, the gates and the mask select. Gradients come from TensorFlow's while_loop.

Where a GPU is present, or a setting the lean loop does not cover is used (recurrent or input
dropout, other activations, GRU with ``reset_after=False``, unrolling, stateful layers), the
layers defer to Keras' own loop, which uses cuDNN on a GPU.
"""

import keras
import tensorflow as tf


def _lean_loop_fits(layer):
    cell = layer.cell
    return (
        not cell.dropout
        and not cell.recurrent_dropout
        and cell.use_bias
        and cell.activation is keras.activations.tanh
        and getattr(cell, "recurrent_activation", keras.activations.sigmoid) is keras.activations.sigmoid
        and getattr(cell, "reset_after", True)
        and not layer.unroll
        and not layer.stateful
        and not tf.config.list_logical_devices("GPU")
    )


def run_loop(step, projected, states, mask, go_backwards, return_sequences, zero_output_for_mask):
    """What ``keras.backend.rnn`` returns, ``(last_output, outputs, states)``, for a cell whose output
    is its first state and whose input projection is already done.

    projected: [batch, time, gates] inputs already multiplied by the input kernel (plus biases);
    step(projected_t, states) -> new states. Masked steps keep the previous states; outputs
    follow Keras' rule: a masked step repeats the previous output (zeros before the first kept
    step), or is zero with ``zero_output_for_mask``. Outputs are in processing order (reversed
    with ``go_backwards``), as Keras' loop gives them.
    """
    xs = tf.transpose(projected, [1, 0, 2])  # time-major: one TensorArray read per step
    if mask is not None:
        # [time, batch, 1] booleans, broadcast by tf.where against [batch, units].
        keep = tf.expand_dims(tf.transpose(tf.cast(mask, tf.bool)), -1)
    if go_backwards:
        xs = tf.reverse(xs, [0])
        keep = tf.reverse(keep, [0]) if mask is not None else None
    steps = xs.shape[0] or tf.shape(xs)[0]  # static where known, as XLA needs for the TensorArrays
    xs_ta = tf.TensorArray(xs.dtype, size=steps, element_shape=xs.shape[1:]).unstack(xs)
    keep_ta = (
        tf.TensorArray(tf.bool, size=steps, element_shape=keep.shape[1:]).unstack(keep) if mask is not None else None
    )
    out_ta = tf.TensorArray(xs.dtype, size=steps if return_sequences else 0, element_shape=states[0].shape)

    def body(t, out_ta, states):
        new = step(xs_ta.read(t), states)
        if keep_ta is not None:
            keep_t = keep_ta.read(t)
            new = [tf.where(keep_t, n, s) for n, s in zip(new, states)]
        if return_sequences:
            out_ta = out_ta.write(t, new[0])
        return t + 1, out_ta, new

    _, out_ta, states = tf.while_loop(
        lambda t, *_: t < steps, body, (tf.constant(0), out_ta, list(states)), maximum_iterations=steps
    )
    states = list(states)
    if return_sequences:
        outputs = out_ta.stack()  # [time, batch, units]: each step's (mask-carried) first state
        if mask is not None:
            # Vectorised after the loop: zero where Keras' loop would give zeros.
            shown = keep if zero_output_for_mask else tf.cast(tf.cumsum(tf.cast(keep, tf.int32), axis=0), tf.bool)
            outputs = tf.where(shown, outputs, tf.zeros_like(outputs))
        last = outputs[-1]
        outputs = tf.transpose(outputs, [1, 0, 2])
    else:
        last = states[0]
        if mask is not None:
            shown = keep[-1] if zero_output_for_mask else tf.reduce_any(keep, axis=0)
            last = tf.where(shown, last, tf.zeros_like(last))
        outputs = tf.expand_dims(last, 1)  # what Keras returns when it keeps only the last output
    return last, outputs, states


def _project(sequences, kernel, bias):
    return tf.matmul(sequences, tf.cast(kernel, sequences.dtype)) + tf.cast(bias, sequences.dtype)


def _states(initial_state):
    return list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]


def _mask(mask):
    return mask[0] if isinstance(mask, (list, tuple)) else mask


@keras.saving.register_keras_serializable(package="nlpapps")
class SimpleRNN(keras.layers.SimpleRNN):
    """``keras.layers.SimpleRNN`` with the lean loop: h_t = tanh(x_t·W + b + h_{t-1}·U)."""

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if not _lean_loop_fits(self):
            return super().inner_loop(sequences, initial_state, mask, training=training)
        recurrent = tf.cast(self.cell.recurrent_kernel, sequences.dtype)

        def step(x_t, states):
            return [tf.tanh(x_t + tf.matmul(states[0], recurrent))]

        projected = _project(sequences, self.cell.kernel, self.cell.bias)
        return run_loop(
            step, projected, _states(initial_state), _mask(mask), self.go_backwards, self.return_sequences,
            self.zero_output_for_mask,
        )  # fmt: skip


@keras.saving.register_keras_serializable(package="nlpapps")
class LSTM(keras.layers.LSTM):
    """``keras.layers.LSTM`` with the lean loop (gates i, f, c, o as Keras stacks them)."""

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if not _lean_loop_fits(self):
            return super().inner_loop(sequences, initial_state, mask, training=training)
        recurrent = tf.cast(self.cell.recurrent_kernel, sequences.dtype)
        n = self.cell.units

        def step(x_t, states):
            h, c = states
            i_f, g, o = tf.split(x_t + tf.matmul(h, recurrent), [2 * n, n, n], axis=1)
            i, f = tf.split(tf.sigmoid(i_f), 2, axis=1)
            c = f * c + i * tf.tanh(g)
            return [tf.sigmoid(o) * tf.tanh(c), c]

        projected = _project(sequences, self.cell.kernel, self.cell.bias)
        return run_loop(
            step, projected, _states(initial_state), _mask(mask), self.go_backwards, self.return_sequences,
            self.zero_output_for_mask,
        )  # fmt: skip


@keras.saving.register_keras_serializable(package="nlpapps")
class GRU(keras.layers.GRU):
    """``keras.layers.GRU`` with the lean loop, in Keras' default ``reset_after`` form:

    z = σ(x·W_z + b_z + h·U_z + b'_z)   r = σ(x·W_r + b_r + h·U_r + b'_r)
    h̃ = tanh(x·W_h + b_h + r·(h·U_h + b'_h))   h_t = z·h_{t-1} + (1 − z)·h̃

    (b the input bias, b' the recurrent one). Every bias but b'_h adds to the input projection
    outside the loop; b'_h sits inside the reset gate's product, so it stays in the step.
    """

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if not _lean_loop_fits(self):
            return super().inner_loop(sequences, initial_state, mask, training=training)
        n = self.cell.units
        recurrent = tf.cast(self.cell.recurrent_kernel, sequences.dtype)
        input_bias, recurrent_bias = tf.unstack(tf.cast(self.cell.bias, sequences.dtype))
        recurrent_zr_bias, candidate_bias = tf.split(recurrent_bias, [2 * n, n])
        projection_bias = input_bias + tf.concat([recurrent_zr_bias, tf.zeros_like(candidate_bias)], 0)

        def step(x_t, states):
            h = states[0]
            x_zr, x_h = tf.split(x_t, [2 * n, n], axis=1)
            h_zr, h_h = tf.split(tf.matmul(h, recurrent), [2 * n, n], axis=1)
            z, r = tf.split(tf.sigmoid(x_zr + h_zr), 2, axis=1)
            candidate = tf.tanh(x_h + r * (h_h + candidate_bias))
            return [candidate + z * (h - candidate)]

        projected = _project(sequences, self.cell.kernel, projection_bias)
        return run_loop(
            step, projected, _states(initial_state), _mask(mask), self.go_backwards, self.return_sequences,
            self.zero_output_for_mask,
        )  # fmt: skip


@keras.saving.register_keras_serializable(package="nlpapps")
class PeepholeLSTM(keras.layers.RNN):
    """``keras.layers.RNN`` over a ``PeepholeLSTMCell`` with the lean loop (its equations: cells.py).
    No fused kernel exists for peepholes on any device, so the lean loop runs on a GPU too."""

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if self.unroll or self.stateful:
            return super().inner_loop(sequences, initial_state, mask, training=training)
        cell = self.cell
        recurrent = tf.cast(cell.recurrent_kernel, sequences.dtype)
        peep_i, peep_f, peep_o = tf.unstack(tf.cast(cell.peephole_weights, sequences.dtype))

        def step(x_t, states):
            h, c = states
            a_i, a_f, a_c, a_o = tf.split(x_t + tf.matmul(h, recurrent), 4, axis=1)
            i, f = tf.sigmoid(a_i + peep_i * c), tf.sigmoid(a_f + peep_f * c)
            c = f * c + i * tf.tanh(a_c)
            return [tf.sigmoid(a_o + peep_o * c) * tf.tanh(c), c]

        projected = _project(sequences, cell.kernel, cell.bias)
        return run_loop(
            step, projected, _states(initial_state), _mask(mask), self.go_backwards, self.return_sequences,
            self.zero_output_for_mask,
        )  # fmt: skip
