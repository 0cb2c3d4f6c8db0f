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


def to_physical(tops, current, scale, order, margin):
    """The members' head outputs averaged, in physical units: (every target in the recipe's order
    [batch, time, horizon, K], the quantities' QUANTILES [batch, time, horizon, Kq, 2] sorted and
    widened by `margin` [horizon, Kq] on each side, or None). current: the quantities' current
    readings [batch, time, Kq]; scale: their standardised changes' (mean, std) [horizon, Kq];
    order: the recipe's target order of [quantities, events]."""
    mean, std = np.float32(scale[0]), np.float32(scale[1])  # constants of each graph, not captured tensors
    widen = np.stack([-margin, margin], -1).astype(np.float32)
    average = {kind: tf.add_n([out[kind] for out in tops]) / len(tops) for kind in tops[0]}
    parts, quantiles = [], None
    if "quantities" in average:
        start = current[:, :, None, :]
        parts.append(start + average["quantities"] * std + mean)
        quantiles = tf.sort(start[..., None] + average["quantiles"] * std[..., None] + mean[..., None], axis=-1)
        quantiles = tf.sort(quantiles + widen, axis=-1)  # a negative margin narrows; never crossed
    if "events" in average:
        parts.append(average["events"])
    return tf.gather(tf.concat(parts, -1), order, axis=-1), quantiles


def streaming_functions(model, d, targets, scale, start, margin=None):
    """The serving functions: whole-sequence `forecast`, `initial_state` and one-reading `step`, and
    the names of the stream's state. d: the recipe's data settings; scale: (mean, std) of the
    quantities' changes [horizon, Kq]; start: the reading assumed before the first one (the
    training means), from which missing readings are carried forward; margin: the quantiles'
    calibration [horizon, Kq] (scores.interval_margin), none by default."""
    stream = Stream(model, d, targets, scale, start, np.zeros_like(scale[0]) if margin is None else margin)
    f, n_features, units = tf.float32, len(d["features"]), stream.stack.units
    whole = [
        tf.TensorSpec([None, None, n_features], f, name="readings"),
        tf.TensorSpec([None, None], tf.float64, name="time"),
    ]
    stepped = [
        tf.TensorSpec([None, n_features], f, name="reading"),
        tf.TensorSpec([None], tf.float64, name="time"),
        tf.TensorSpec([None, n_features], f, name="last_reading"),
        *(tf.TensorSpec([None, len(departed(d))], f, name=k) for k in stream.reading_state),
        *(tf.TensorSpec([None, units], f, name=name) for name in stream.names),
    ]
    return {
        "serving_default": (stream.forecast, whole),
        "forecast": (stream.forecast, whole),
        "initial_state": (stream.initial_state, [tf.TensorSpec([], tf.int32, name="batch_size")]),
        # One reading costs a few hundred small ops; compiled by XLA (export.compiled, as every app's
        # numeric part is served) they cost far less to launch (the same numbers, to float rounding).
        "step": (export.compiled(stream.step, model.weights), stepped),
    }, ["last_reading", *stream.reading_state, *stream.names]


class Stream:
    """The served model's parts, and the three signatures' functions over them."""

    def __init__(self, model, d, targets, scale, start, margin):
        self.d, self.scale, self.start, self.margin = d, scale, start, margin
        features = d["features"]
        self.reading_state = ["trailing_mean"] if departed(d) else []  # what the stream keeps to read a reading
        self.current = [features.index(c) for _, c, t in targets if t is None]
        self.encoder = model.get_layer("encode")
        count = sum(layer.name.startswith("stack") for layer in model.layers)
        self.members = [(model.get_layer(f"stack{s}"), model.get_layer(f"heads{s}")) for s in member_suffixes(count)]
        self.stack = stack = self.members[0][0]
        kinds = np.array([threshold is None for _, _, threshold in targets])
        self.order = np.argsort(np.r_[np.flatnonzero(kinds), np.flatnonzero(~kinds)], kind="stable")
        self.per_member = stack.states_per_layer * stack.depth
        self.layer_states = [
            f"{'hc'[i % stack.states_per_layer]}{i // stack.states_per_layer + 1}" for i in range(self.per_member)
        ]
        self.names = [f"{name}{suffix}" for suffix in member_suffixes(count) for name in self.layer_states]

    def outputs(self, tops, filled):
        """forecast [batch, time, horizon, K] and each quantile's forecast_pNN [batch, time, horizon, Kq]."""
        out, quantiles = to_physical(tops, tf.gather(filled, self.current, axis=-1), self.scale, self.order, self.margin)
        named = {"forecast": out}
        if quantiles is not None:
            named.update({f"forecast_{name}": quantiles[..., i] for i, name in enumerate(QUANTILE_OUTPUTS)})
        return named

    def forecast(self, readings, seconds):
        # The forecast follows the last reading; a caller who sends none is told so by name.
        # Ordered before the readings are used: otherwise the scan may fail first, on an empty sequence.
        check = tf.debugging.assert_positive(
            tf.shape(readings)[1], message="forecast: readings hold no time step; give at least one reading"
        )
        with tf.control_dependencies([check]):
            readings = tf.identity(readings)
        batch, d = tf.shape(readings)[0], self.d
        filled, _ = series.carry_forward(readings, tf.broadcast_to(self.start, [batch, len(d["features"])]))
        x = self.encoder([read_readings(filled, d, no_history(d, batch))[0], seconds])
        zeros = [tf.zeros([batch, self.stack.units]) for _ in self.layer_states]
        tops = [top([run(x, initial_state=zeros, training=False)[0], x]) for run, top in self.members]
        every = self.outputs(tops, filled)  # after every reading: forecasts, forecasts_p10, ...
        return {
            **{k: v[:, -1] for k, v in every.items()},
            **{k.replace("forecast", "forecasts"): v for k, v in every.items()},
        }

    def initial_state(self, batch_size):
        return {
            "last_reading": tf.broadcast_to(self.start, [batch_size, len(self.d["features"])]),
            **({"trailing_mean": no_history(self.d, batch_size)} if self.reading_state else {}),
            **{name: tf.zeros([batch_size, self.stack.units]) for name in self.names},
        }

    def step(self, reading, seconds, last_reading, *states):
        last = tf.where(tf.math.is_finite(reading), reading, last_reading)  # carry_forward of one step
        mean = states[0] if self.reading_state else no_history(self.d, 0)
        given, mean = read_readings(last[:, None], self.d, mean)
        states = states[len(self.reading_state) :]
        # The cells themselves, not the layers' loop over a one-step sequence: the same numbers, fewer ops.
        x = self.encoder([given, seconds[:, None]])
        tops, new, n = [], [], self.per_member
        for k, (member, top) in enumerate(self.members):
            y, member_new = member.step(x[:, 0], list(states[k * n : (k + 1) * n]))
            tops.append(top([y[:, None], x]))
            new += member_new
        return {
            **{k: v[:, 0] for k, v in self.outputs(tops, last[:, None]).items()},
            "last_reading": last,
            **({"trailing_mean": mean} if self.reading_state else {}),
            **dict(zip(self.names, new)),
        }


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
