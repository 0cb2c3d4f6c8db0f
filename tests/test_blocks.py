"""Tests for nlpapps.blocks: cells against Keras' own layers, and RecurrentStack."""

import os
import types

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

import nlpapps.blocks.stack as stack_module  # noqa: E402
from nlpapps.blocks import (  # noqa: E402
    CELLS,
    GRUCell,
    LSTMCell,
    PeepholeLSTMCell,
    RecurrentStack,
    recurrent_stack,
)

# Keras' own saving code calls np.array(tf.Variable) which numpy 2 flags; not ours.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

SHAPES = [(2, 5, 3, 4), (3, 7, 6, 2), (1, 4, 8, 9)]  # (batch, time, input_dim, units)
CELL_CLASSES = [LSTMCell, GRUCell, PeepholeLSTMCell]


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)


def _rand(rng, *shape, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype("float32")


def _randomize(layer, rng, scale=0.5):
    """Give every weight random values so no gate sits at its default init."""
    for w in layer.weights:
        w.assign(_rand(rng, *w.shape, scale=scale))


def _padded_batch(rng, lengths, vocab=30, pad_to=None):
    pad_to = pad_to or max(lengths)
    ids = np.zeros((len(lengths), pad_to), dtype="int32")
    for row, n in enumerate(lengths):
        ids[row, :n] = rng.integers(1, vocab, size=n)  # 0 is reserved for padding
    return ids


# --------------------------------------------------------------------------- cells


@pytest.mark.parametrize("batch,time,dim,units", SHAPES)
def test_lstm_cell_matches_keras_lstm(batch, time, dim, units):
    rng = np.random.default_rng(1)
    x = _rand(rng, batch, time, dim)
    ref = keras.layers.LSTM(units, return_sequences=True)
    ours = keras.layers.RNN(LSTMCell(units), return_sequences=True)
    ref(x), ours(x)  # build both
    _randomize(ref, rng)
    # Same layout (i, f, c, o), so a plain 1:1 copy must reproduce Keras.
    ours.set_weights(ref.get_weights())
    np.testing.assert_allclose(ours(x), ref(x), atol=1e-5)


def test_lstm_cell_default_init_matches_keras_layout():
    cell = LSTMCell(3)
    cell.build((None, 5))
    assert cell.kernel.shape == (5, 12) and cell.recurrent_kernel.shape == (3, 12)
    # unit_forget_bias: only the forget-gate block (second of i, f, c, o) starts at 1.
    np.testing.assert_array_equal(cell.bias.numpy(), [0] * 3 + [1] * 3 + [0] * 6)


@pytest.mark.parametrize("batch,time,dim,units", SHAPES)
def test_gru_cell_matches_keras_gru_with_negated_update_gate(batch, time, dim, units):
    rng = np.random.default_rng(2)
    x = _rand(rng, batch, time, dim)
    ref = keras.layers.GRU(units, reset_after=False, return_sequences=True)
    ours = keras.layers.RNN(GRUCell(units), return_sequences=True)
    ref(x), ours(x)
    _randomize(ref, rng)
    kernel, recurrent, bias = (w.numpy().copy() for w in ref.cell.weights)  # kernel, recurrent, bias
    assert bias.shape == (3 * units,)  # reset_after=False keeps a single bias vector
    ours.set_weights([kernel, recurrent, bias])
    # A straight copy is wrong: Keras' update gate z is our 1 - z ...
    assert not np.allclose(ours(x), ref(x), atol=1e-3)
    # ... and sigma(-a) = 1 - sigma(a), so negating the z block fixes it.
    for w in (kernel, recurrent, bias):
        w[..., :units] *= -1
    ours.set_weights([kernel, recurrent, bias])
    np.testing.assert_allclose(ours(x), ref(x), atol=1e-5)


def _peephole_reference(x, kernel, recurrent, bias, peep):
    """Plain numpy Gers et al. (2000) peephole LSTM, for an independent check."""
    sig = lambda a: 1.0 / (1.0 + np.exp(-a))  # noqa: E731
    units = recurrent.shape[0]
    h = np.zeros((x.shape[0], units))
    c = np.zeros((x.shape[0], units))
    outs = []
    for t in range(x.shape[1]):
        a_i, a_f, a_c, a_o = np.split(x[:, t] @ kernel + h @ recurrent + bias, 4, axis=-1)
        i = sig(a_i + peep[0] * c)
        f = sig(a_f + peep[1] * c)
        c = f * c + i * np.tanh(a_c)
        o = sig(a_o + peep[2] * c)
        h = o * np.tanh(c)
        outs.append(h)
    return np.stack(outs, axis=1)


@pytest.mark.parametrize("batch,time,dim,units", SHAPES)
def test_peephole_cell_reduces_to_lstm_and_follows_equations(batch, time, dim, units):
    rng = np.random.default_rng(3)
    x = _rand(rng, batch, time, dim)
    lstm = keras.layers.RNN(LSTMCell(units), return_sequences=True)
    peep = keras.layers.RNN(PeepholeLSTMCell(units), return_sequences=True)
    lstm(x), peep(x)
    _randomize(lstm, rng)
    for name in ("kernel", "recurrent_kernel", "bias"):
        getattr(peep.cell, name).assign(getattr(lstm.cell, name))
    # Fresh peepholes are zero, so the cell is exactly an LSTM.
    np.testing.assert_array_equal(peep.cell.peephole_weights.numpy(), 0.0)
    np.testing.assert_allclose(peep(x), lstm(x), atol=1e-6)

    p = _rand(rng, 3, units)
    peep.cell.peephole_weights.assign(p)
    out = peep(x).numpy()
    assert not np.allclose(out, lstm(x), atol=1e-3)
    c = lstm.cell
    expected = _peephole_reference(x, c.kernel.numpy(), c.recurrent_kernel.numpy(), c.bias.numpy(), p)
    np.testing.assert_allclose(out, expected, atol=1e-5)


def _assert_grads_reach(layer, x, **call_kwargs):
    rng = np.random.default_rng(4)
    with tf.GradientTape() as tape:
        out = layer(x, **call_kwargs)
        out = out[0] if isinstance(out, tuple) else out
        # Random projection so no gradient cancels by symmetry.
        loss = tf.reduce_sum(out * _rand(rng, *out.shape))
    weights = layer.trainable_weights
    assert weights
    grads = tape.gradient(loss, weights)
    for w, g in zip(weights, grads):
        assert g is not None, w.path
        assert np.any(np.asarray(tf.convert_to_tensor(g)) != 0), w.path


@pytest.mark.parametrize("cell_cls", CELL_CLASSES)
def test_gradients_reach_every_cell_weight(cell_cls):
    x = _rand(np.random.default_rng(5), 2, 6, 3)
    layer = keras.layers.RNN(cell_cls(4), return_sequences=True)
    _assert_grads_reach(layer, x)
    assert len(layer.trainable_weights) == (4 if cell_cls is PeepholeLSTMCell else 3)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("cell", CELLS)
def test_gradients_reach_every_stack_weight(cell, bidirectional):
    x = _rand(np.random.default_rng(6), 2, 5, 3)
    stack = recurrent_stack(cell, 4, depth=2, bidirectional=bidirectional, residual=True, return_sequences=True)
    _assert_grads_reach(stack, x, training=True)
    per_layer = {"rnn": 3, "lstm": 3, "gru": 3, "peephole": 4}[cell]
    assert len(stack.trainable_weights) == per_layer * 2 * (2 if bidirectional else 1)


# --------------------------------------------------------------------------- stack


@pytest.mark.parametrize("cell_cls", CELL_CLASSES)
def test_masked_cells_ignore_padding(cell_cls):
    rng = np.random.default_rng(7)
    x = _rand(rng, 1, 4, 3)
    padded = np.concatenate([x, np.zeros((1, 3, 3), "float32")], axis=1)
    mask = np.array([[True] * 4 + [False] * 3])
    layer = keras.layers.RNN(cell_cls(5))
    np.testing.assert_allclose(layer(padded, mask=mask), layer(x), atol=1e-6)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("cell", CELLS)
def test_stack_padded_equals_unpadded(cell, bidirectional):
    rng = np.random.default_rng(8)
    ids = _padded_batch(rng, [5, 2, 7], pad_to=9)
    inp = keras.Input((None,), dtype="int32")
    emb = keras.layers.Embedding(30, 6, mask_zero=True)(inp)
    out = recurrent_stack(cell, 4, depth=2, bidirectional=bidirectional, residual=True)(emb)
    model = keras.Model(inp, out)
    batched = model(ids).numpy()
    assert batched.shape == (3, 8 if bidirectional else 4)
    for row, n in enumerate([5, 2, 7]):
        np.testing.assert_allclose(batched[row], model(ids[row : row + 1, :n])[0], atol=1e-5)
    # Without the mask the padding does leak in, so the check above is not vacuous.
    # (np.asarray drops the mask Keras attaches to the eager embedding output.)
    stack, emb = model.layers[-1], np.asarray(model.layers[1](ids[1:2]))
    unmasked, masked = stack(emb), stack(emb, mask=ids[1:2] != 0)
    assert not np.allclose(unmasked, masked, atol=1e-4)


@pytest.mark.parametrize("pooling", ["max", "mean"])
def test_pooling_ignores_padding(pooling):
    rng = np.random.default_rng(12)
    ids = _padded_batch(rng, [5, 2, 7], pad_to=9)
    inp = keras.Input((None,), dtype="int32")
    emb = keras.layers.Embedding(30, 6, mask_zero=True)(inp)
    model = keras.Model(inp, recurrent_stack("gru", 4, bidirectional=True, pooling=pooling)(emb))
    batched = model(ids).numpy()
    assert batched.shape == (3, 8)
    for row, n in enumerate([5, 2, 7]):
        np.testing.assert_allclose(batched[row], model(ids[row : row + 1, :n])[0], atol=1e-5)
    # Pooling is over time, so it differs from the final state.
    last = keras.Model(inp, recurrent_stack("gru", 4, bidirectional=True)(emb))
    last.set_weights(model.get_weights())
    assert not np.allclose(last(ids), batched, atol=1e-4)
    # A text that is all padding pools to zeros, never -inf or NaN.
    np.testing.assert_array_equal(model(np.zeros((1, 3), "int32")), np.zeros((1, 8)))


def test_stack_sequence_mask_propagates_and_eager_matches_functional():
    rng = np.random.default_rng(9)
    ids = _padded_batch(rng, [3, 6])
    emb_layer = keras.layers.Embedding(30, 6, mask_zero=True)
    stack = recurrent_stack("gru", 4, depth=2, residual=True, return_sequences=True)
    inp = keras.Input((None,), dtype="int32")
    model = keras.Model(inp, stack(emb_layer(inp)))
    # Eager: the mask travels on the embedding output and Keras passes it on.
    emb = emb_layer(ids)
    eager = stack(emb)
    np.testing.assert_allclose(eager, model(ids), atol=1e-6)
    np.testing.assert_array_equal(stack.compute_mask(emb, ids != 0), ids != 0)
    assert recurrent_stack("gru", 4).compute_mask(emb, ids != 0) is None
    # Valid positions of the short row match running it unpadded.
    np.testing.assert_allclose(eager[0, :3], stack(emb_layer(ids[:1, :3]))[0], atol=1e-5)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("cell", CELLS)
def test_return_state_shapes_and_values(cell, bidirectional):
    x = _rand(np.random.default_rng(10), 2, 5, 3)
    stack = recurrent_stack(cell, 4, depth=2, bidirectional=bidirectional, return_sequences=True, return_state=True)
    seq, states = stack(x)
    width = 8 if bidirectional else 4
    assert seq.shape == (2, 5, width)
    assert len(states) == (2 if cell in ("lstm", "peephole") else 1)
    assert all(s.shape == (2, width) for s in states)
    h = states[0].numpy()
    # Forward half is the last forward output; backward half is the first backward output.
    np.testing.assert_allclose(h[:, :4], seq[:, -1, :4], atol=1e-6)
    if bidirectional:
        np.testing.assert_allclose(h[:, 4:], seq[:, 0, 4:], atol=1e-6)


def test_initial_state_seeds_first_layer_and_rejects_bidirectional():
    rng = np.random.default_rng(11)
    x = _rand(rng, 2, 5, 3)
    enc_states = [_rand(rng, 2, 4), _rand(rng, 2, 4)]
    dec = recurrent_stack("lstm", 4, return_sequences=True, return_state=True)
    zeros = [np.zeros((2, 4), "float32")] * 2
    seeded, _ = dec(x, initial_state=enc_states)
    np.testing.assert_allclose(dec(x)[0], dec(x, initial_state=zeros)[0], atol=1e-6)
    assert not np.allclose(seeded, dec(x)[0], atol=1e-3)
    # Matches the underlying Keras layer seeded the same way.
    np.testing.assert_allclose(seeded, dec.rnn_layers[0](x, initial_state=enc_states)[0], atol=1e-6)
    with pytest.raises(ValueError, match="bidirectional"):
        recurrent_stack("lstm", 4, bidirectional=True)(x, initial_state=enc_states * 2)


def test_residual_adds_layer_input():
    x = _rand(np.random.default_rng(12), 2, 5, 3)
    plain = recurrent_stack("gru", 4, depth=2, return_sequences=True)
    res = recurrent_stack("gru", 4, depth=2, residual=True, return_sequences=True)
    plain(x), res(x)
    res.set_weights(plain.get_weights())
    first = plain.rnn_layers[0](x)
    np.testing.assert_allclose(res(x), plain(x) + first, atol=1e-6)


def test_dropout_only_in_training():
    x = _rand(np.random.default_rng(13), 4, 5, 3)
    stack = recurrent_stack("lstm", 8, depth=2, dropout=0.5, return_sequences=True)
    np.testing.assert_allclose(stack(x, training=False), stack(x), atol=1e-6)
    assert np.mean(stack(x, training=True).numpy() == 0) > 0.2


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"cell": "transformer"}, "unknown cell 'transformer'; choose one of rnn, lstm, gru, peephole"),
        ({"units": 0}, "units"),
        ({"depth": 0}, "depth"),
    ],
)
def test_invalid_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        recurrent_stack(**kwargs)


def test_config_round_trip():
    stack = recurrent_stack(
        "peephole",
        7,
        depth=3,
        bidirectional=True,
        dropout=0.25,
        residual=True,
        return_sequences=True,
        return_state=True,
        name="enc",
    )
    config = stack.get_config()
    assert {
        k: config[k]
        for k in (
            "cell",
            "units",
            "depth",
            "bidirectional",
            "dropout",
            "residual",
            "return_sequences",
            "return_state",
            "name",
        )
    } == {
        "cell": "peephole",
        "units": 7,
        "depth": 3,
        "bidirectional": True,
        "dropout": 0.25,
        "residual": True,
        "return_sequences": True,
        "return_state": True,
        "name": "enc",
    }
    assert RecurrentStack.from_config(config).get_config() == config


def _assert_save_round_trip(model, inputs, path):
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    expected, got = model(inputs), loaded(inputs)
    for e, g in zip(tf.nest.flatten(expected), tf.nest.flatten(got)):
        np.testing.assert_allclose(g, e, atol=1e-6)


def test_save_reload_classifier(tmp_path):
    rng = np.random.default_rng(14)
    ids = _padded_batch(rng, [4, 6, 2])
    inp = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(30, 6, mask_zero=True)(inp)
    x = recurrent_stack("peephole", 4, depth=2, bidirectional=True, dropout=0.1, residual=True)(x)
    model = keras.Model(inp, keras.layers.Dense(3)(x))
    for w in model.layers[2].weights:  # nonzero peepholes so they must survive the reload
        if "peephole" in w.path:
            w.assign(_rand(rng, *w.shape))
    _assert_save_round_trip(model, ids, tmp_path / "clf.keras")


@pytest.mark.parametrize("cell", CELLS)
def test_save_reload_encoder_decoder(cell, tmp_path):
    rng = np.random.default_rng(15)
    src, tgt = _padded_batch(rng, [5, 3]), _padded_batch(rng, [4, 2])
    src_in = keras.Input((None,), dtype="int32")
    tgt_in = keras.Input((None,), dtype="int32")
    src_emb = keras.layers.Embedding(30, 6, mask_zero=True)(src_in)
    _, enc_states = recurrent_stack(cell, 4, return_state=True)(src_emb)
    dec = recurrent_stack(cell, 4, depth=2, return_sequences=True, return_state=True)
    dec_seq, _ = dec(keras.layers.Embedding(30, 6, mask_zero=True)(tgt_in), initial_state=enc_states)
    model = keras.Model([src_in, tgt_in], keras.layers.Dense(30)(dec_seq))
    out = model([src, tgt])
    assert out.shape == (2, tgt.shape[1], 30)
    _assert_save_round_trip(model, [src, tgt], tmp_path / "s2s.keras")


@pytest.mark.parametrize("cell", CELLS)
def test_all_states_lets_a_deep_stack_be_stepped_one_input_at_a_time(cell):
    """A decoder's search and a streaming forecast feed one step at a time with every layer's
    states carried over: that must equal running the whole sequence at once."""
    x = np.random.default_rng(0).normal(size=(3, 7, 5)).astype("float32")
    stack = recurrent_stack(cell, 4, depth=3, return_sequences=True, return_state=True, all_states=True)
    whole, final = stack(x)
    assert len(final) == 3 * stack.states_per_layer
    states, steps = [np.zeros((3, 4), "float32")] * len(final), []
    for t in range(x.shape[1]):
        y, states = stack(x[:, t : t + 1], initial_state=states)
        steps.append(np.asarray(y)[:, 0])
    np.testing.assert_allclose(np.stack(steps, axis=1), whole, atol=1e-5)
    for stepped, at_once in zip(states, final):
        np.testing.assert_allclose(stepped, at_once, atol=1e-5)


@pytest.mark.parametrize("cell", CELLS)
def test_step_runs_the_cells_and_equals_the_whole_sequence(cell):
    """`step` feeds one input [batch, features] through every layer's cell (no loop over time):
    the outputs and states of a whole sequence at once, residual connections included."""
    x = np.random.default_rng(1).normal(size=(3, 7, 4)).astype("float32")
    stack = recurrent_stack(cell, 4, depth=3, residual=True, return_sequences=True, return_state=True, all_states=True)
    whole, final = stack(x)
    states, steps = [np.zeros((3, 4), "float32")] * len(final), []
    for t in range(x.shape[1]):
        y, states = stack.step(x[:, t], states)
        steps.append(np.asarray(y))
    np.testing.assert_allclose(np.stack(steps, axis=1), whole, atol=1e-5)
    for stepped, at_once in zip(states, final):
        np.testing.assert_allclose(stepped, at_once, atol=1e-5)


# --------------------------------------------------------------------------- lean loop


def _keras_loop_twin(monkeypatch, **kwargs):
    """The same stack built from Keras' own layers (their generic loop), for reference."""
    keras_layers = types.SimpleNamespace(
        SimpleRNN=keras.layers.SimpleRNN,
        LSTM=keras.layers.LSTM,
        GRU=keras.layers.GRU,
        PeepholeLSTM=keras.layers.RNN,
    )
    with monkeypatch.context() as patch:
        patch.setattr(stack_module, "loops", keras_layers)
        return recurrent_stack(**kwargs)


def _random_mask(rng, batch, time):
    """Kept prefixes of random lengths (one row all padding), and one row with holes; step 4 is
    masked in every row (a hole no row keeps); the last step is padding in every row, as in a batch
    padded to a length bucket's edge."""
    lengths = rng.integers(1, time, size=batch)
    lengths[0] = 0
    lengths[1] = time - 1
    mask = np.arange(time)[None, :] < lengths[:, None]
    mask[-1] = rng.random(time) < 0.6
    mask[:, [4, -1]] = False
    return mask


def _forward_and_gradients(layer, x, mask, **kwargs):
    """Every output of a layer called as training calls it, and the gradients of their weighted sum
    with respect to the input and every weight (compiled, as training runs it)."""

    @tf.function
    def run(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = tf.nest.flatten(layer(x, mask=mask, training=True, **kwargs))
            # Different weights per output so each one's gradient counts.
            loss = sum(tf.reduce_sum(o * float(k + 1)) for k, o in enumerate(out))
        return out + tape.gradient(loss, [x] + layer.trainable_weights)

    return run(tf.constant(x))


LEAN_CASES = [  # the last layer without sequences (seeded), and both directions with every output
    dict(bidirectional=False, return_state=True, all_states=True, seeded=True),
    dict(bidirectional=True, return_sequences=True, return_state=True, all_states=True),
]


@pytest.mark.parametrize("case", LEAN_CASES, ids=lambda c: "-".join(f"{k}" for k, v in c.items() if v))
@pytest.mark.parametrize("cell", CELLS)
def test_lean_loop_equals_keras_loop_with_gradients(cell, case, monkeypatch):
    """Outputs, final states and gradients (inputs and every weight) of the stack's lean loop
    equal Keras' own layers' on random masked batches, compiled as training runs them."""
    rng = np.random.default_rng(16)
    case = dict(case)
    seeded = case.pop("seeded", False)
    kwargs = dict(cell=cell, units=5, depth=2, residual=True, **case)
    ours, ref = recurrent_stack(**kwargs), _keras_loop_twin(monkeypatch, **kwargs)
    x, mask = _rand(rng, 4, 9, 3), _random_mask(rng, 4, 9)
    ours(x), ref(x)
    lean = tuple(vars(stack_module.loops)[name] for name in ("SimpleRNN", "LSTM", "GRU", "PeepholeLSTM"))
    for stack, is_lean in ((ours, True), (ref, False)):
        for layer in stack.rnn_layers:
            directions = [layer.forward_layer, layer.backward_layer] if case["bidirectional"] else [layer]
            assert all(isinstance(d, lean) == is_lean for d in directions)
    _randomize(ref, rng)
    ours.set_weights(ref.get_weights())
    n_states = ours.states_per_layer * (2 if case.get("all_states") else 1)
    initial = [tf.constant(_rand(rng, 4, 5)) for _ in range(n_states)] if seeded else None
    ours_all = _forward_and_gradients(ours, x, tf.constant(mask), initial_state=initial)
    ref_all = _forward_and_gradients(ref, x, tf.constant(mask), initial_state=initial)
    assert len(ours_all) == len(ref_all)
    for got, expected in zip(ours_all, ref_all):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)  # float32 rounding of sums up to ~50


def test_lean_loop_equals_keras_for_go_backwards_and_zero_output():
    """The layers on their own, with the settings ``Bidirectional`` and users may give them, with
    and without a mask: outputs, and in training their gradients too."""
    rng = np.random.default_rng(17)
    x, mask = _rand(rng, 4, 6, 3), _random_mask(rng, 4, 6)
    for name in ("SimpleRNN", "LSTM", "GRU"):
        for settings in ({"go_backwards": True}, {"zero_output_for_mask": True}, {"return_sequences": False}):
            settings = {"return_sequences": True, "return_state": True, **settings}
            ours, ref = getattr(stack_module.loops, name)(4, **settings), getattr(keras.layers, name)(4, **settings)
            ours(x), ref(x)
            _randomize(ref, rng)
            ours.set_weights(ref.get_weights())
            for got, expected in zip(ours(x, mask=mask), ref(x, mask=mask)):
                np.testing.assert_allclose(got, expected, atol=1e-5)
            for m in (tf.constant(mask), None):
                trained = zip(_forward_and_gradients(ours, x, m), _forward_and_gradients(ref, x, m))
                for got, expected in trained:
                    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
