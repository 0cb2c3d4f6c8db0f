"""Keras' SimpleRNN, LSTM and GRU layers (and a peephole LSTM) with a leaner loop over time.

On a CPU, Keras runs these layers through its generic masked loop, which calls the whole Keras
cell at every step: the input projection x·W is recomputed step by step, and each step carries
many small bookkeeping ops whose per-op cost dominates a small model. The layers here keep
Keras' weights, equations, masking rules and config (so saved models and stepping a cell by
hand work unchanged) and replace only that loop: the input projection of every step is ONE
matmul before the loop, and the loop body holds only the recurrent matmul, the gates and the
mask select. Gradients come from TensorFlow's while_loop. Under ``keras.layers.Bidirectional``
the two directions are two independent loops, which TensorFlow's executor runs side by side (one
loop over both directions, with a batched recurrent matmul, used as much CPU time and took longer).
A loop runs only over the steps some row keeps.

Where a GPU is present, or a setting the lean loop does not cover is used (recurrent or input
dropout, other activations, GRU with ``reset_after=False``, unrolling, stateful layers), the
layers defer to Keras' own loop, which uses cuDNN on a GPU.
"""

import keras
import tensorflow as tf


def _loop(step, xs, keep, states, return_sequences):
    """The loop itself, time-major: xs [time, ..., gates] projected inputs, keep [time, ..., 1]
    booleans or None, step(x_t, states) -> new states. Masked steps keep the previous states.
    Returns (every step's first state stacked over time, or None; the final states)."""
    steps = xs.shape[0] or tf.shape(xs)[0]  # static where known, as XLA needs for the TensorArrays
    xs_ta = tf.TensorArray(xs.dtype, size=steps, element_shape=xs.shape[1:]).unstack(xs)
    keep_ta = None if keep is None else tf.TensorArray(tf.bool, size=steps, element_shape=keep.shape[1:]).unstack(keep)
    out_ta = tf.TensorArray(xs.dtype, size=steps if return_sequences else 0, element_shape=states[0].shape)
    first, stop = tf.constant(0), steps
    if keep is not None:
        # Steps that no row keeps change no state: the loop runs from the first kept step to the last
        # only. A served batch is padded to a length bucket's edge, up to a third more steps than it has.
        kept = tf.reduce_any(keep, axis=list(range(1, keep.shape.rank)))
        first = tf.cast(tf.argmax(kept), tf.int32)
        stop = steps - tf.cast(tf.argmax(tf.reverse(kept, [0])), tf.int32)
        if return_sequences:  # the steps the loop skips: zeros where no row kept a step yet
            out_ta = out_ta.unstack(tf.zeros(tf.concat([[steps], tf.shape(states[0])], 0), xs.dtype))

    def body(t, out_ta, states):
        new = step(xs_ta.read(t), states)
        if keep_ta is not None:
            keep_t = keep_ta.read(t)
            new = [tf.where(keep_t, n, s) for n, s in zip(new, states)]
        if return_sequences:
            out_ta = out_ta.write(t, new[0])
        return t + 1, out_ta, new

    _, out_ta, states = tf.while_loop(
        lambda t, *_: t < stop, body, (first, out_ta, list(states)), maximum_iterations=steps
    )
    if not return_sequences:
        return None, list(states)
    outputs = out_ta.stack()
    if keep is not None:  # after the last kept step a masked step repeats the last output: the final state
        outputs = tf.where(tf.reshape(tf.range(steps) >= stop, [-1, 1, 1]), states[0], outputs)
    return outputs, list(states)


def _time_major_keep(mask):
    return None if mask is None else tf.expand_dims(tf.transpose(tf.cast(mask, tf.bool)), -1)


def run_loop(layer, sequences, initial_state, mask):
    """What ``keras.backend.rnn`` returns to ``layer.inner_loop``, ``(last_output, outputs, states)``,
    by the lean loop: a masked step repeats the previous output (zeros before the first kept step),
    or is zero with ``zero_output_for_mask``; outputs are in processing order (reversed with
    ``go_backwards``), as Keras' loop gives them."""
    kernel, bias, recurrent, extras = layer.lean_weights(sequences.dtype)
    # Every step's x·W + b at once, as one 2-D matmul: a 3-D input would make it a BatchMatMul that
    # multiplies step by step and sums the kernel's gradient over the steps (a third of a training step).
    xs = tf.tensordot(tf.transpose(sequences, [1, 0, 2]), kernel, 1) + bias
    keep = _time_major_keep(mask[0] if isinstance(mask, (list, tuple)) else mask)  # [time, batch, 1]
    if layer.go_backwards:
        xs, keep = tf.reverse(xs, [0]), (None if keep is None else tf.reverse(keep, [0]))
    states = list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
    outputs, states = _loop(
        lambda x_t, s: layer.lean_step(x_t, s, recurrent, *extras), xs, keep, states, layer.return_sequences
    )
    if layer.return_sequences:
        if keep is not None:  # vectorised after the loop: zero where Keras' loop would give zeros
            shown = keep if layer.zero_output_for_mask else tf.cumsum(tf.cast(keep, tf.int32), axis=0) > 0
            outputs = tf.where(shown, outputs, tf.zeros_like(outputs))
        last, outputs = outputs[-1], tf.transpose(outputs, [1, 0, 2])
    else:
        last = states[0]
        if keep is not None:
            shown = keep[-1] if layer.zero_output_for_mask else tf.reduce_any(keep, axis=0)
            last = tf.where(shown, last, tf.zeros_like(last))
        outputs = tf.expand_dims(last, 1)  # what Keras returns when it keeps only the last output
    return last, outputs, states


def _lean_loop_fits(layer):
    """Settings of Keras' SimpleRNN/LSTM/GRU the lean loop covers (else Keras' loop runs)."""
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
        and not tf.config.list_logical_devices("GPU")  # there Keras uses cuDNN
    )


class LeanLayer:
    """What a lean layer gives the loop: ``lean_weights(dtype)`` -> (input kernel, input bias,
    recurrent kernel, extra step weights) and ``lean_step(x_t, states, recurrent, *extras)``."""

    def lean_loop_fits(self):
        return _lean_loop_fits(self)

    def lean_weights(self, dtype):  # the plain form; GRU and the peephole LSTM have more
        return (*_cast(dtype, self.cell.kernel, self.cell.bias, self.cell.recurrent_kernel), ())

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if not self.lean_loop_fits():
            return super().inner_loop(sequences, initial_state, mask, training=training)
        return run_loop(self, sequences, initial_state, mask)


def _cast(dtype, *variables):
    return [tf.cast(v, dtype) for v in variables]


@keras.saving.register_keras_serializable(package="nlpapps")
class SimpleRNN(LeanLayer, keras.layers.SimpleRNN):
    """``keras.layers.SimpleRNN`` with the lean loop: h_t = tanh(x_t·W + b + h_{t-1}·U)."""

    @staticmethod
    def lean_step(x_t, states, recurrent):
        return [tf.tanh(x_t + tf.matmul(states[0], recurrent))]


@keras.saving.register_keras_serializable(package="nlpapps")
class LSTM(LeanLayer, keras.layers.LSTM):
    """``keras.layers.LSTM`` with the lean loop (gates i, f, c, o as Keras stacks them)."""

    @staticmethod
    def lean_step(x_t, states, recurrent):
        h, c = states
        n = recurrent.shape[-2]
        i_f, g, o = tf.split(x_t + tf.matmul(h, recurrent), [2 * n, n, n], axis=-1)
        i, f = tf.split(tf.sigmoid(i_f), 2, axis=-1)
        c = f * c + i * tf.tanh(g)
        return [tf.sigmoid(o) * tf.tanh(c), c]


@keras.saving.register_keras_serializable(package="nlpapps")
class GRU(LeanLayer, keras.layers.GRU):
    """``keras.layers.GRU`` with the lean loop, in Keras' default ``reset_after`` form:

    z = σ(x·W_z + b_z + h·U_z + b'_z)   r = σ(x·W_r + b_r + h·U_r + b'_r)
    h̃ = tanh(x·W_h + b_h + r·(h·U_h + b'_h))   h_t = z·h_{t-1} + (1 − z)·h̃

    (b the input bias, b' the recurrent one). Every bias but b'_h adds to the input projection
    outside the loop; b'_h sits inside the reset gate's product, so it stays in the step.
    """

    def lean_weights(self, dtype):
        n = self.cell.units
        kernel, bias, recurrent = _cast(dtype, self.cell.kernel, self.cell.bias, self.cell.recurrent_kernel)
        input_bias, recurrent_bias = tf.unstack(bias)
        recurrent_zr_bias, candidate_bias = tf.split(recurrent_bias, [2 * n, n])
        projection_bias = input_bias + tf.concat([recurrent_zr_bias, tf.zeros_like(candidate_bias)], 0)
        return kernel, projection_bias, recurrent, (candidate_bias,)

    @staticmethod
    def lean_step(x_t, states, recurrent, candidate_bias):
        h, n = states[0], recurrent.shape[-2]
        x_zr, x_h = tf.split(x_t, [2 * n, n], axis=-1)
        h_zr, h_h = tf.split(tf.matmul(h, recurrent), [2 * n, n], axis=-1)
        z, r = tf.split(tf.sigmoid(x_zr + h_zr), 2, axis=-1)
        candidate = tf.tanh(x_h + r * (h_h + candidate_bias))
        return [candidate + z * (h - candidate)]


@keras.saving.register_keras_serializable(package="nlpapps")
class PeepholeLSTM(LeanLayer, keras.layers.RNN):
    """``keras.layers.RNN`` over a ``PeepholeLSTMCell`` with the lean loop (its equations: cells.py).
    No fused kernel exists for peepholes on any device, so the lean loop runs on a GPU too."""

    def lean_loop_fits(self):
        return not self.unroll and not self.stateful

    def lean_weights(self, dtype):
        cell = self.cell
        kernel, bias, recurrent, peepholes = _cast(
            dtype, cell.kernel, cell.bias, cell.recurrent_kernel, cell.peephole_weights
        )
        return kernel, bias, recurrent, tuple(tf.unstack(peepholes))

    @staticmethod
    def lean_step(x_t, states, recurrent, peep_i, peep_f, peep_o):
        h, c = states
        a_i, a_f, a_c, a_o = tf.split(x_t + tf.matmul(h, recurrent), 4, axis=-1)
        i, f = tf.sigmoid(a_i + peep_i * c), tf.sigmoid(a_f + peep_f * c)
        c = f * c + i * tf.tanh(a_c)
        return [tf.sigmoid(a_o + peep_o * c) * tf.tanh(c), c]
