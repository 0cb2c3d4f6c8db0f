"""Keras' SimpleRNN, LSTM and GRU layers (and a peephole LSTM) with a leaner loop over time.

On a CPU, Keras runs these layers through its generic masked loop, which calls the whole Keras
cell at every step: the input projection x·W is recomputed step by step, and each step carries
many small bookkeeping ops whose per-op cost dominates a small model. The layers here keep
Keras' weights, equations, masking rules and config (so saved models and stepping a cell by
hand work unchanged) and replace only that loop: the input projection of every step is ONE
matmul before the loop, and the loop body holds only the recurrent matmul, the gates and the
mask select. Under ``keras.layers.Bidirectional`` the two directions are two independent loops,
which TensorFlow's executor runs side by side (one loop over both directions, with a batched
recurrent matmul, used as much CPU time and took longer).

Training runs the loop in pieces of ``PIECE`` steps compiled by XLA, forward and backward, with
a hand-written gradient: the executor's cost per op (tens of microseconds for each of a step's few
dozen tiny ops on a busy CPU) and the automatic gradient's bookkeeping of every intermediate go
away, and a fixed piece length compiles once per batch size, not once per sequence length.
A loop runs only over the steps some row keeps.

Where a GPU is present, or a setting the lean loop does not cover is used (recurrent or input
dropout, other activations, GRU with ``reset_after=False``, unrolling, stateful layers), the
layers defer to Keras' own loop, which uses cuDNN on a GPU.
"""

import functools

import keras
import tensorflow as tf


def _loop(step, xs, keep, states, return_sequences, record=False):
    """The loop itself, time-major: xs [time, ..., gates] projected inputs, keep [time, ..., 1]
    booleans or None, step(x_t, states) -> (new states, tensors the gradient needs). Masked steps keep
    the previous states, and their output repeats the state. Returns (every step's first state
    stacked over time, or None; the final states; with ``record``, every step's states before it and
    tensors the gradient needs, concatenated [time, ..., width], else None)."""
    steps = xs.shape[0] or tf.shape(xs)[0]  # static where known, as XLA needs for the TensorArrays
    xs_ta = tf.TensorArray(xs.dtype, size=steps, element_shape=xs.shape[1:]).unstack(xs)
    keep_ta = None if keep is None else tf.TensorArray(tf.bool, size=steps, element_shape=keep.shape[1:]).unstack(keep)
    out_ta = tf.TensorArray(xs.dtype, size=steps if return_sequences else 0, element_shape=states[0].shape)
    record_ta = tf.TensorArray(xs.dtype, size=steps if record else 0)
    first, stop = _kept_span(keep, steps)
    if keep is not None and return_sequences:  # the steps before the first kept one repeat the initial state
        out_ta = out_ta.unstack(tf.broadcast_to(states[0], tf.concat([[steps], tf.shape(states[0])], 0)))

    def body(t, out_ta, record_ta, states):
        new, saved = step(xs_ta.read(t), states)
        if record:
            record_ta = record_ta.write(t, tf.concat(list(states) + saved, -1))
        if keep_ta is not None:
            keep_t = keep_ta.read(t)
            new = [tf.where(keep_t, n, s) for n, s in zip(new, states)]
        if return_sequences:
            out_ta = out_ta.write(t, new[0])
        return t + 1, out_ta, record_ta, new

    _, out_ta, record_ta, states = tf.while_loop(
        lambda t, *_: t < stop, body, (first, out_ta, record_ta, list(states)), maximum_iterations=steps
    )
    records = record_ta.stack() if record else None  # steps the loop skipped: zeros (XLA's TensorArrays)
    if not return_sequences:
        return None, list(states), records
    outputs = out_ta.stack()
    if keep is not None:  # after the last kept step a masked step repeats the last output: the final state
        outputs = tf.where(tf.reshape(tf.range(steps) >= stop, [-1, 1, 1]), states[0], outputs)
    return outputs, list(states), records


def _kept_span(keep, steps):
    """Steps that no row keeps change no state: a loop runs from the first kept step to the last only.
    A served batch is padded to a length bucket's edge, up to a third more steps than it has."""
    if keep is None:
        return tf.constant(0), steps
    kept = tf.reduce_any(keep, axis=list(range(1, keep.shape.rank)))
    return tf.cast(tf.argmax(kept), tf.int32), steps - tf.cast(tf.argmax(tf.reverse(kept, [0])), tf.int32)


def _backward(layer, records, keep, d_outputs, d_final, recurrent, extras):
    """The derivative of `_loop` (with every output, from the records it made), a loop from the last
    kept step to the first: returns the gradients of every step's projected input and recurrent
    matmul output [time, batch, gates] (zeros at the skipped steps), and of the initial states."""
    steps, n_states, dtype = records.shape[0], len(d_final), recurrent.dtype
    first, stop = _kept_span(keep, steps)
    skipped = tf.reshape(tf.range(steps), [-1, 1, 1])
    # What `_loop` shows at the steps it skips are the initial and the final state.
    d_initial_output = tf.reduce_sum(tf.where(skipped < first, d_outputs, 0), 0)
    d_final = [d_final[0] + tf.reduce_sum(tf.where(skipped >= stop, d_outputs, 0), 0), *d_final[1:]]
    record_ta = tf.TensorArray(dtype, size=steps).unstack(records)
    keep_ta = tf.TensorArray(dtype, size=steps).unstack(tf.cast(keep, dtype))
    d_out_ta = tf.TensorArray(dtype, size=steps).unstack(d_outputs)
    dx_ta = tf.TensorArray(dtype, size=steps)
    dhu_ta = tf.TensorArray(dtype, size=0 if layer.lean_same_gradients else steps)
    recurrent_t = tf.transpose(recurrent)

    def body(t, dx_ta, dhu_ta, d_states):
        record = tf.split(record_ta.read(t), layer.lean_record_parts, axis=-1)
        d_states = [d_states[0] + d_out_ta.read(t), *d_states[1:]]
        keep_t = keep_ta.read(t)
        into = [d * keep_t for d in d_states]  # a masked row's step passes its gradient on unchanged
        dx, dhu, d_prev = layer.lean_backward(into, record[:n_states], record[n_states:], *extras)
        through_recurrent = tf.matmul(dhu, recurrent_t)
        d_prev = [through_recurrent if d_prev[0] is None else d_prev[0] + through_recurrent, *d_prev[1:]]
        d_prev = [p + d - i for p, d, i in zip(d_prev, d_states, into)]
        if not layer.lean_same_gradients:
            dhu_ta = dhu_ta.write(t, dhu)
        return t - 1, dx_ta.write(t, dx), dhu_ta, d_prev

    _, dx_ta, dhu_ta, d_initial = tf.while_loop(
        lambda t, *_: t >= first, body, (stop - 1, dx_ta, dhu_ta, list(d_final)), maximum_iterations=steps
    )
    dxs = dx_ta.stack()
    dhus = dxs if layer.lean_same_gradients else dhu_ta.stack()
    return dxs, dhus, [d_initial[0] + d_initial_output, *d_initial[1:]]


# Training runs the loop in compiled pieces of this many steps: XLA runs a piece's steps without the
# executor's cost per op (a step is a few dozen tiny ops), and a fixed piece length compiles once per
# batch size instead of once per sequence length.
PIECE = 32


@functools.cache
def _pieces(layer_class):
    """The compiled forward and backward pieces of a lean layer class (its steps are static methods)."""

    def forward(xs, keep, states, recurrent, extras):
        step = lambda x_t, s: layer_class.lean_step(x_t, s, recurrent, *extras)  # noqa: E731
        return _loop(step, xs, keep, states, True, record=True)

    def backward(records, keep, d_outputs, d_states, recurrent, extras):
        return _backward(layer_class, records, keep, d_outputs, d_states, recurrent, extras)

    return tf.function(forward, jit_compile=True), tf.function(backward, jit_compile=True)


def _trained_loop(layer, xs, keep, states, recurrent, extras, return_sequences):
    """`_loop` for training: compiled pieces of PIECE steps, with a hand-written gradient (the
    layer's ``lean_backward``) that runs the pieces backwards. The recurrent kernel's gradient is
    one matmul after it, Σ_t h_{t-1}ᵀ·d(h_{t-1}·U), over every step's records."""
    forward, backward = _pieces(type(layer))
    steps, rows, n_states = tf.shape(xs)[0], tf.shape(xs)[1], len(states)
    pieces = (steps + PIECE - 1) // PIECE
    if keep is None:
        keep = tf.ones([steps, rows, 1], tf.bool)
    # Batches are padded with masked rows to a power of two (16 at least), so the pieces compile once
    # for each of a few sizes, not for every size an epoch's leftover batches happen to have.
    sizes = tf.constant([2**k for k in range(4, 31)])
    padding = tf.reduce_min(tf.where(sizes >= rows, sizes, sizes[-1])) - rows
    xs, keep = [tf.pad(x, [[0, 0], [0, padding], [0, 0]]) for x in (xs, keep)]
    states = [tf.pad(s, [[0, padding], [0, 0]]) for s in states]

    def cut(x):  # [steps, ...] -> [pieces, PIECE, ...], the steps added at the end masked out
        x = tf.pad(x, tf.concat([[[0, pieces * PIECE - steps]], tf.zeros([x.shape.rank - 1, 2], tf.int32)], 0))
        return tf.reshape(x, tf.concat([[pieces, PIECE], tf.shape(x)[1:]], 0))

    def join(x):  # the inverse of cut
        return tf.reshape(x, tf.concat([[pieces * PIECE], tf.shape(x)[2:]], 0))[:steps]

    keeps = cut(keep)

    @tf.custom_gradient
    def loop(xs, recurrent, *args):
        # Nothing in here is differentiated (`gradient` is): no tape may ask the pieces for theirs.
        xs, recurrent, *args = [tf.stop_gradient(x) for x in (xs, recurrent, *args)]
        states, extras = args[:n_states], args[n_states:]
        xs_pieces = cut(xs)
        out_ta = tf.TensorArray(xs.dtype, size=pieces)
        record_ta = tf.TensorArray(xs.dtype, size=pieces, clear_after_read=False)  # read twice by `gradient`

        def ahead(c, out_ta, record_ta, states):
            outputs, states, records = forward(xs_pieces[c], keeps[c], states, recurrent, extras)
            return c + 1, out_ta.write(c, outputs), record_ta.write(c, records), states

        _, out_ta, record_ta, final = tf.while_loop(lambda c, *_: c < pieces, ahead, (0, out_ta, record_ta, states))
        outputs = join(out_ta.stack())
        shown = ([outputs] if return_sequences else []) + final

        def gradient(*upstream):
            upstream = [tf.zeros_like(y) if g is None else g for g, y in zip(upstream, shown)]
            d_outputs = cut(upstream[0] if return_sequences else tf.zeros_like(outputs))
            d_final = upstream[1:] if return_sequences else upstream
            dx_ta, dhu_ta = tf.TensorArray(xs.dtype, size=pieces), tf.TensorArray(xs.dtype, size=pieces)

            def back(c, dx_ta, dhu_ta, d_states):
                dxs, dhus, d_states = backward(record_ta.read(c), keeps[c], d_outputs[c], d_states, recurrent, extras)
                return c - 1, dx_ta.write(c, dxs), dhu_ta.write(c, dhus), d_states

            _, dx_ta, dhu_ta, d_initial = tf.while_loop(
                lambda c, *_: c >= 0, back, (pieces - 1, dx_ta, dhu_ta, list(d_final))
            )
            records = tf.split(join(record_ta.stack()), layer.lean_record_parts, axis=-1)
            dxs, dhus = join(dx_ta.stack()), join(dhu_ta.stack())
            d_recurrent = tf.tensordot(records[0], dhus, [[0, 1], [0, 1]])
            d_extras = layer.lean_extras_gradient(dxs, dhus, records[:n_states], records[n_states:])
            return [dxs, d_recurrent, *d_initial, *d_extras]

        return shown, gradient

    shown = loop(xs, recurrent, *states, *extras)
    outputs, final = (shown[0][:, :rows], shown[1:]) if return_sequences else (None, shown)
    return outputs, [s[:rows] for s in final]


def _time_major_keep(mask):
    return None if mask is None else tf.expand_dims(tf.transpose(tf.cast(mask, tf.bool)), -1)


def run_loop(layer, sequences, initial_state, mask, training=False):
    """What ``keras.backend.rnn`` returns to ``layer.inner_loop``, ``(last_output, outputs, states)``,
    by the lean loop: a masked step repeats the previous output (zeros before the first kept step),
    or is zero with ``zero_output_for_mask``; outputs are in processing order (reversed with
    ``go_backwards``), as Keras' loop gives them."""
    kernel, bias, recurrent, extras = layer.lean_weights(sequences.dtype)
    xs = tf.matmul(tf.transpose(sequences, [1, 0, 2]), kernel) + bias  # every step's x·W + b at once
    keep = _time_major_keep(mask[0] if isinstance(mask, (list, tuple)) else mask)  # [time, batch, 1]
    if layer.go_backwards:
        xs, keep = tf.reverse(xs, [0]), (None if keep is None else tf.reverse(keep, [0]))
    states = list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
    if training:
        outputs, states = _trained_loop(layer, xs, keep, states, recurrent, extras, layer.return_sequences)
    else:
        step = lambda x_t, s: layer.lean_step(x_t, s, recurrent, *extras)  # noqa: E731
        outputs, states, _ = _loop(step, xs, keep, states, layer.return_sequences)
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
    recurrent kernel, extra step weights); ``lean_step(x_t, states, recurrent, *extras)`` -> (new
    states, the step's tensors its derivative needs, each ``units`` wide: ``lean_record_parts`` counts
    them with the states); ``lean_backward(d_new_states, states, saved, *extras)`` -> (the gradient of
    the step's projected input, of its recurrent matmul's output (the same tensor where
    ``lean_same_gradients``), of the states before it apart from through that matmul (None: none));
    ``lean_extras_gradient(dxs, dhus, states, saved)``: the extra weights' gradients from every step's."""

    lean_same_gradients = True

    @staticmethod
    def lean_extras_gradient(dxs, dhus, states, saved):
        return ()

    def lean_loop_fits(self):
        return _lean_loop_fits(self)

    def lean_weights(self, dtype):  # the plain form; GRU and the peephole LSTM have more
        return (*_cast(dtype, self.cell.kernel, self.cell.bias, self.cell.recurrent_kernel), ())

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if not self.lean_loop_fits():
            return super().inner_loop(sequences, initial_state, mask, training=training)
        return run_loop(self, sequences, initial_state, mask, training=training)


def _cast(dtype, *variables):
    return [tf.cast(v, dtype) for v in variables]


def _sigmoid_grad(d, y):
    return d * y * (1 - y)


def _tanh_grad(d, y):
    return d * (1 - y * y)


@keras.saving.register_keras_serializable(package="nlpapps")
class SimpleRNN(LeanLayer, keras.layers.SimpleRNN):
    """``keras.layers.SimpleRNN`` with the lean loop: h_t = tanh(x_t·W + b + h_{t-1}·U)."""

    lean_record_parts = 2  # h_{t-1}; h_t

    @staticmethod
    def lean_step(x_t, states, recurrent):
        h = tf.tanh(x_t + tf.matmul(states[0], recurrent))
        return [h], [h]

    @staticmethod
    def lean_backward(d_states, states, saved):
        da = _tanh_grad(d_states[0], saved[0])
        return da, da, [None]


@keras.saving.register_keras_serializable(package="nlpapps")
class LSTM(LeanLayer, keras.layers.LSTM):
    """``keras.layers.LSTM`` with the lean loop (gates i, f, c, o as Keras stacks them)."""

    lean_record_parts = 7  # h_{t-1}, c_{t-1}; i, f, g, o, tanh(c_t)

    @staticmethod
    def lean_step(x_t, states, recurrent):
        h, c = states
        n = recurrent.shape[-2]
        i_f, g, o = tf.split(x_t + tf.matmul(h, recurrent), [2 * n, n, n], axis=-1)
        i, f = tf.split(tf.sigmoid(i_f), 2, axis=-1)
        g, o = tf.tanh(g), tf.sigmoid(o)
        c = f * c + i * g
        tanh_c = tf.tanh(c)
        return [o * tanh_c, c], [i, f, g, o, tanh_c]

    @staticmethod
    def lean_backward(d_states, states, saved):
        (dh, dc), (_, c_prev), (i, f, g, o, tanh_c) = d_states, states, saved
        dc = dc + _tanh_grad(dh * o, tanh_c)
        da = tf.concat(
            [
                _sigmoid_grad(dc * g, i),
                _sigmoid_grad(dc * c_prev, f),
                _tanh_grad(dc * i, g),
                _sigmoid_grad(dh * tanh_c, o),
            ],
            -1,
        )
        return da, da, [None, dc * f]


@keras.saving.register_keras_serializable(package="nlpapps")
class GRU(LeanLayer, keras.layers.GRU):
    """``keras.layers.GRU`` with the lean loop, in Keras' default ``reset_after`` form:

    z = σ(x·W_z + b_z + h·U_z + b'_z)   r = σ(x·W_r + b_r + h·U_r + b'_r)
    h̃ = tanh(x·W_h + b_h + r·(h·U_h + b'_h))   h_t = z·h_{t-1} + (1 − z)·h̃

    (b the input bias, b' the recurrent one). Every bias but b'_h adds to the input projection
    outside the loop; b'_h sits inside the reset gate's product, so it stays in the step.
    """

    lean_record_parts = 5  # h_{t-1}; z, r, h̃, h·U_h + b'_h
    lean_same_gradients = False  # r scales h·U_h's part

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
        h_h = h_h + candidate_bias
        candidate = tf.tanh(x_h + r * h_h)
        return [candidate + z * (h - candidate)], [z, r, candidate, h_h]

    @staticmethod
    def lean_backward(d_states, states, saved, candidate_bias):
        (dh,), (h,), (z, r, candidate, h_h) = d_states, states, saved
        d_candidate = _tanh_grad(dh * (1 - z), candidate)
        d_zr = tf.concat([_sigmoid_grad(dh * (h - candidate), z), _sigmoid_grad(d_candidate * h_h, r)], -1)
        return tf.concat([d_zr, d_candidate], -1), tf.concat([d_zr, d_candidate * r], -1), [dh * z]

    @staticmethod
    def lean_extras_gradient(dxs, dhus, states, saved):
        n = saved[0].shape[-1]
        return (tf.reduce_sum(dhus[..., 2 * n :], [0, 1]),)


@keras.saving.register_keras_serializable(package="nlpapps")
class PeepholeLSTM(LeanLayer, keras.layers.RNN):
    """``keras.layers.RNN`` over a ``PeepholeLSTMCell`` with the lean loop (its equations: cells.py).
    No fused kernel exists for peepholes on any device, so the lean loop runs on a GPU too."""

    lean_record_parts = 8  # h_{t-1}, c_{t-1}; i, f, g, o, tanh(c_t), c_t

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
        h, c_prev = states
        a_i, a_f, a_c, a_o = tf.split(x_t + tf.matmul(h, recurrent), 4, axis=-1)
        i, f, g = tf.sigmoid(a_i + peep_i * c_prev), tf.sigmoid(a_f + peep_f * c_prev), tf.tanh(a_c)
        c = f * c_prev + i * g
        o, tanh_c = tf.sigmoid(a_o + peep_o * c), tf.tanh(c)
        return [o * tanh_c, c], [i, f, g, o, tanh_c, c]

    @staticmethod
    def lean_backward(d_states, states, saved, peep_i, peep_f, peep_o):
        (dh, dc), (_, c_prev), (i, f, g, o, tanh_c, _) = d_states, states, saved
        da_o = _sigmoid_grad(dh * tanh_c, o)
        dc = dc + _tanh_grad(dh * o, tanh_c) + da_o * peep_o
        da_i, da_f = _sigmoid_grad(dc * g, i), _sigmoid_grad(dc * c_prev, f)
        da = tf.concat([da_i, da_f, _tanh_grad(dc * i, g), da_o], -1)
        return da, da, [None, dc * f + da_i * peep_i + da_f * peep_f]

    @staticmethod
    def lean_extras_gradient(dxs, dhus, states, saved):
        da_i, da_f, _, da_o = tf.split(dxs, 4, axis=-1)
        c_prev, c = states[1], saved[-1]
        return tuple(tf.reduce_sum(d * v, [0, 1]) for d, v in ((da_i, c_prev), (da_f, c_prev), (da_o, c)))
