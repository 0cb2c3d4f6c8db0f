"""The forecast's serving signatures: the whole-sequence `forecast`, `initial_state` and the
one-reading `step`, all on raw readings in physical units; and the forecasts over a whole series
that the scores read, computed by the same `forecast` function that is served."""

import numpy as np
import tensorflow as tf

from nlpapps import export
from nlpapps.data import series
from nlpapps.tasks.forecast.data import departed, no_history, read_readings
from nlpapps.tasks.forecast.model import QUANTILES, member_suffixes

# The quantiles' outputs, beside `forecast` (after the last reading) and `forecasts` (after every one).
QUANTILE_OUTPUTS = tuple(f"p{round(q * 100)}" for q in QUANTILES)


def to_physical(tops, current, scale, order):
    """The members' head outputs averaged, in physical units: (every target in the recipe's order
    [batch, time, horizon, K], the quantities' QUANTILES [batch, time, horizon, Kq, 2] sorted, or
    None). current: the quantities' current readings [batch, time, Kq]; scale: their standardised
    changes' (mean, std) [horizon, Kq]; order: the recipe's target order of [quantities, events]."""
    mean, std = np.float32(scale[0]), np.float32(scale[1])  # constants of each graph, not captured tensors
    average = {kind: tf.add_n([out[kind] for out in tops]) / len(tops) for kind in tops[0]}
    parts, quantiles = [], None
    if "quantities" in average:
        start = current[:, :, None, :]
        parts.append(start + average["quantities"] * std + mean)
        quantiles = tf.sort(start[..., None] + average["quantiles"] * std[..., None] + mean[..., None], axis=-1)
    if "events" in average:
        parts.append(average["events"])
    return tf.gather(tf.concat(parts, -1), order, axis=-1), quantiles


def streaming_functions(model, d, targets, scale, start):
    """The serving functions: whole-sequence `forecast`, `initial_state` and one-reading `step`, and
    the names of the stream's state. d: the recipe's data settings; scale: (mean, std) of the
    quantities' changes [horizon, Kq]; start: the reading assumed before the first one (the
    training means), from which missing readings are carried forward."""
    features = d["features"]
    n_features = len(features)
    reading_state = ["trailing_mean"] if departed(d) else []  # what the stream keeps to read a reading
    current = [features.index(c) for _, c, t in targets if t is None]
    encoder = model.get_layer("encode")
    count = sum(layer.name.startswith("stack") for layer in model.layers)
    members = [(model.get_layer(f"stack{s}"), model.get_layer(f"heads{s}")) for s in member_suffixes(count)]
    stack = members[0][0]
    kinds = np.array([threshold is None for _, _, threshold in targets])
    order = np.argsort(np.r_[np.flatnonzero(kinds), np.flatnonzero(~kinds)], kind="stable")
    per_member = stack.states_per_layer * stack.depth
    layer_states = [f"{'hc'[i % stack.states_per_layer]}{i // stack.states_per_layer + 1}" for i in range(per_member)]
    names = [f"{name}{suffix}" for suffix in member_suffixes(len(members)) for name in layer_states]

    def outputs(tops, filled):
        """forecast [batch, time, horizon, K] and each quantile's forecast_pNN [batch, time, horizon, Kq]."""
        out, quantiles = to_physical(tops, tf.gather(filled, current, axis=-1), scale, order)
        named = {"forecast": out}
        if quantiles is not None:
            named.update({f"forecast_{name}": quantiles[..., i] for i, name in enumerate(QUANTILE_OUTPUTS)})
        return named

    def forecast(readings, seconds):
        # The forecast follows the last reading; a caller who sends none is told so by name.
        tf.debugging.assert_positive(
            tf.shape(readings)[1], message="forecast: readings hold no time step; give at least one reading"
        )
        batch = tf.shape(readings)[0]
        filled, _ = series.carry_forward(readings, tf.broadcast_to(start, [batch, n_features]))
        x = encoder([read_readings(filled, d, no_history(d, batch))[0], seconds])
        zeros = [tf.zeros([batch, stack.units]) for _ in layer_states]
        tops = [top([run(x, initial_state=zeros, training=False)[0], x]) for run, top in members]
        every = outputs(tops, filled)  # after every reading: forecasts, forecasts_p10, ...
        return {
            **{k: v[:, -1] for k, v in every.items()},
            **{k.replace("forecast", "forecasts"): v for k, v in every.items()},
        }

    def initial_state(batch_size):
        return {
            "last_reading": tf.broadcast_to(start, [batch_size, n_features]),
            **({"trailing_mean": no_history(d, batch_size)} if reading_state else {}),
            **{name: tf.zeros([batch_size, stack.units]) for name in names},
        }

    # One reading costs a few hundred small ops; compiled by XLA (export.compiled, as every app's
    # numeric part is served) they cost far less to launch (the same numbers, to float rounding).
    def step(reading, seconds, last_reading, *states):
        last = tf.where(tf.math.is_finite(reading), reading, last_reading)  # carry_forward of one step
        mean = states[0] if reading_state else no_history(d, 0)
        given, mean = read_readings(last[:, None], d, mean)
        states = states[len(reading_state) :]
        # The cells themselves, not the layers' loop over a one-step sequence: the same numbers, fewer ops.
        x = encoder([given, seconds[:, None]])
        tops, new = [], []
        for k, (member, top) in enumerate(members):
            y, member_new = member.step(x[:, 0], list(states[k * per_member : (k + 1) * per_member]))
            tops.append(top([y[:, None], x]))
            new += member_new
        return {
            **{k: v[:, 0] for k, v in outputs(tops, last[:, None]).items()},
            "last_reading": last,
            **({"trailing_mean": mean} if reading_state else {}),
            **dict(zip(names, new)),
        }

    f = tf.float32
    whole = [
        tf.TensorSpec([None, None, n_features], f, name="readings"),
        tf.TensorSpec([None, None], tf.float64, name="time"),
    ]
    stepped = [
        tf.TensorSpec([None, n_features], f, name="reading"),
        tf.TensorSpec([None], tf.float64, name="time"),
        tf.TensorSpec([None, n_features], f, name="last_reading"),
        *(tf.TensorSpec([None, len(departed(d))], f, name=k) for k in reading_state),
        *(tf.TensorSpec([None, stack.units], f, name=name) for name in names),
    ]
    return {
        "serving_default": (forecast, whole),
        "forecast": (forecast, whole),
        "initial_state": (initial_state, [tf.TensorSpec([], tf.int32, name="batch_size")]),
        "step": (export.compiled(step, model.weights), stepped),
    }, ["last_reading", *reading_state, *names]


def series_forecasts(endpoints, data):
    """The served `forecast` after every step of the series, as the stream reads it: (every target
    [T, horizon, K], the quantities' quantiles [T, horizon, Kq, 2] or None), in physical units."""
    function, signature = endpoints["forecast"]
    out = tf.function(function, input_signature=signature)(
        tf.constant(data.readings[None]), tf.constant(data.seconds[None])
    )
    quantiles = [out[f"forecasts_{name}"] if f"forecasts_{name}" in out else None for name in QUANTILE_OUTPUTS]
    both = None if quantiles[0] is None else np.stack([np.asarray(q[0]) for q in quantiles], -1)
    return np.asarray(out["forecasts"][0]), both
