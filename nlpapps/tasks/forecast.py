"""Streaming forecast (many-to-many, synchronous): at every step the model reads one more reading
and forecasts each target's next `horizon` steps, carrying its recurrent state instead of re-reading
the past.

Targets are quantities (a column: a value per horizon step, scored by MAE/RMSE against persistence and
seasonal naive) or events ("precip > 0": a probability per horizon step, scored by Brier skill and ROC
AUC against climatology, persistence and a logistic regression on the current reading). The export
takes raw readings in physical units: carrying missing readings forward, the encodings and the
normalisation all happen inside it.
"""

import time

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from sklearn.linear_model import LogisticRegression

from nlpapps import evaluation, export, training
from nlpapps.blocks import recurrent_stack
from nlpapps.data import series
from nlpapps.errors import UserError

NAME = "forecast"
HORIZONS = (1, 3, 6, 12, 24)  # horizon steps reported, those within the model's horizon
READING_STATE = ("trailing_mean", "recent_readings")  # a stream's state for reading readings (read_readings)


def check(recipe):
    if recipe["model"]["bidirectional"]:
        raise UserError("model.bidirectional = true: a streaming forecast cannot read the future; set it to false")
    if recipe["train"]["burn_in"] < 0:
        raise UserError(f"train.burn_in = {recipe['train']['burn_in']}: must be 0 or more steps")
    if recipe["model"]["memory"] % 2:
        raise UserError(
            f"model.memory = {recipe['model']['memory']}: must be 0 or even (two copies of the state restart "
            f"half of it apart)"
        )
    if recipe["train"]["carry_state"] and recipe["train"]["burn_in"]:
        raise UserError("train.carry_state and train.burn_in both warm the state up: set one of them")
    d = recipe["data"]
    events = [column for _, column, threshold in series.parse_targets(d["targets"]) if threshold is not None]
    if wrong := [f for f in departed(d) if f in d["angles"] or f in events]:
        raise UserError(
            f"data.anomalies: {wrong[0]!r} is an angle or an event's column (whose level makes the event), "
            f"which cannot be read as a departure from its mean; leave it out of data.anomalies"
        )
    if wrong := [f for f in d["anomalies_too"] if f in d["anomalies"] or f in d["angles"]]:
        raise UserError(
            f"data.anomalies_too: {wrong[0]!r} is an angle or already in data.anomalies (read as a departure "
            f"alone); leave it out of one of them"
        )
    if recipe["train"]["carry_state"] and recipe["train"]["strategy"] != "default":
        raise UserError(
            f"train.carry_state = true keeps each stream's state in one device's variables between batches, "
            f"which train.strategy = {recipe['train']['strategy']} would split among devices; "
            f"set train.carry_state = false to train on several devices"
        )


# --------------------------------------------------------------------------------------------- data


def prepare(recipe, log):
    """The series on its regular grid with gaps filled, its periods, and the training arrays."""
    d, horizon = recipe["data"], recipe["model"]["horizon"]
    targets = series.parse_targets(d["targets"])
    frame, interval, notes = series.load(d["source"], d, [*d["features"], *(c for _, c, _ in targets)])
    for name, column, threshold in targets:
        if threshold is None and column not in d["features"]:
            raise UserError(
                f"data.targets: {name!r} is not among data.features; a quantity's forecast builds "
                f"on its current reading, so add it there"
            )
    filled, observed = series.fill_gaps(frame, d["max_gap"], d["angles"], d["source"])
    n = len(filled)
    a, b = series.chronological(n, d["split"])
    # Every period must hold one sequence and its horizon; training sequences may be shorter than
    # train.window when the training period is.
    if min(a - horizon, b - a - horizon, n - b - horizon) < 8:
        raise UserError(
            f"{d['source']}: {n} steps split {d['split']} leave a period too short for a sequence "
            f"and its {horizon}-step horizon; give more data or a shorter model.horizon"
        )
    future, future_seen = series.target_arrays(filled, observed, targets, horizon, d["event_window"])
    log(
        f"data: {d['source']}: " + "; ".join(notes) + f"; {int((~observed.to_numpy()).sum())} missing values "
        f"interpolated; periods: train {a}, validation {b - a}, test {n - b} steps"
    )
    return {
        "frame": filled,
        "observed": observed,
        "interval": interval,
        "targets": targets,
        "future": future,
        "future_seen": future_seen,
        "bounds": (a, b, n),
        **step_arrays(filled, d),
    }


def step_arrays(filled, d):
    """A filled series' readings [T, features], what the model reads of them, and their unix seconds."""
    readings = filled[d["features"]].to_numpy("float32")
    return {"readings": readings, "inputs": model_inputs(readings, d), "seconds": series.unix_seconds(filled.index)}


def departed(d):
    """The features of data.anomalies that are among data.features (so the default's temp and dewp
    need no change for a file without a dew point): the ones read as departures."""
    return [f for f in d["anomalies"] if f in d["features"]]


def also_departed(d):
    """The features of data.anomalies_too that are among data.features: read as their level and, after
    the features, as their departure too."""
    return [f for f in d["anomalies_too"] if f in d["features"]]


def averaged(d):
    """The features whose trailing mean the stream keeps (its state trailing_mean, in this order)."""
    return departed(d) + also_departed(d)


def changed(d):
    """The features whose changes data.changes appends (all but the angles), none without data.changes."""
    return [f for f in d["features"] if f not in d["angles"]] if d["changes"] else []


def appended(d):
    """How many inputs follow the features: also_departed(d)'s departures, then the changes."""
    return len(also_departed(d)) + len(changed(d)) * len(d["changes"])


def no_history(d, batch):
    """A stream's reading state before its first reading: no trailing mean, no recent readings (NaN)."""
    return tf.fill([batch, len(averaged(d))], np.nan), tf.fill(
        [batch, max(d["changes"], default=0), len(d["features"])], np.nan
    )


def model_inputs(readings, d):
    """What the model reads of readings [T, features] (read_readings), over the series from its first step."""
    return np.asarray(read_readings(tf.constant(readings[None]), d, no_history(d, 1))[0][0])


def read_readings(filled, d, history):
    """What the model reads of carried-forward readings [batch, T, features], and the stream's reading state
    after them (`history`: the one before them, no_history(d) at a stream's start): the departed(d)
    features as their departures from their trailing mean (series.departures), those of also_departed(d)
    as they are with their departures appended after the features, the rest as they are; then each of
    changed(d)'s changes over each of data.changes' steps (series.changes_over). The state: the trailing means
    and the last max(data.changes) readings."""
    features = d["features"]
    mean, recent = history
    columns = [features.index(f) for f in averaged(d)]
    out, appended_inputs = filled, []
    if columns:
        departed_readings, mean = series.departures(filled, columns, 1 / d["anomaly_steps"], mean)
        kept = np.array([features.index(f) for f in also_departed(d)], "int32")
        levels = np.isin(np.arange(len(features)), kept)
        out = tf.where(levels, filled, departed_readings)
        appended_inputs.append(tf.gather(departed_readings, kept, axis=-1))
    if d["changes"]:
        change, recent = series.changes_over(filled, recent, d["changes"])
        picked = [features.index(f) for f in changed(d)]
        appended_inputs += [tf.gather(c, picked, axis=-1) for c in change]
    return tf.concat([out, *appended_inputs], -1), (mean, recent)


def other_stations(recipe, data, log, until=None):
    """The training periods of the other stations of data.train_stations in the same file: more
    sequences of the same weather (stations the file lacks are left out, and said so). Each ends
    where the recipe station's training period ends (or its step `until`: a refit's end), so no step
    of its validation or test period is ever trained on. None for a file without the station column."""
    d, horizon = recipe["data"], recipe["model"]["horizon"]
    others = [s for s in d["train_stations"] if s != d["station"]]
    present = series.stations(d["source"], d["station_column"], d["skip_rows"]) if others else set()
    if not present:
        return []
    if absent := [s for s in others if s not in present]:
        log(f"pooled: no station {', '.join(absent)} of data.train_stations in {d['source']}; left out")
        others = [s for s in others if s in present]
    end = data["frame"].index[data["bounds"][0] if until is None else until]
    columns = [*d["features"], *(c for _, c, _ in data["targets"])]
    parts = []
    for station in others:
        origin = f"{d['source']}, station {station} of data.train_stations"
        frame, _, _ = series.load(d["source"], {**d, "station": station}, columns, data["interval"], origin)
        frame = frame[frame.index < end]
        if len(frame) < horizon + 8:
            continue  # nothing of this station's readings lies in the training period
        filled, observed = series.fill_gaps(frame, d["max_gap"], d["angles"], origin)
        future, _ = series.target_arrays(filled, observed, data["targets"], horizon, d["event_window"])
        parts.append({**step_arrays(filled, d), "future": future, "targets": data["targets"]})
        log(f"pooled: the training period of station {station}, {len(frame)} steps")
    return parts


def season_of(interval, n):
    """Steps per season for the seasonal-naive baseline, and its name: a day for sub-daily data; a
    year for daily or longer intervals when the series spans two years, else a week."""
    steps_per_day = series.DAY / interval.total_seconds()
    if steps_per_day > 1:
        return round(steps_per_day), "one day earlier"
    steps_per_year = series.YEAR / interval.total_seconds()
    if n >= 2 * steps_per_year:
        return round(steps_per_year), "one year earlier"
    return max(1, round(7 * steps_per_day)), "one week earlier"


# -------------------------------------------------------------------------------------------- model


def build(encoder, n_features, targets, m, t, steps_per_epoch):
    """Raw readings and their times → Encode → `model.ensemble` members, each a unidirectional
    recurrent stack (all its states out, so it can be stepped) and its heads (a model of its own,
    which stepping reuses) → their forecasts averaged. Returns (the model to train: every member's
    outputs, each with its own loss; the averaged model, which is served). With train.carry_state
    the model to train takes a third input, `fresh`, and carries each row's state from one batch to
    the next (ThroughStream); without, and with one member, it is the served model itself."""
    readings = keras.Input((None, n_features), name="readings")
    seconds = keras.Input((None,), dtype="float64", name="time")
    x = encoder([readings, seconds])
    suffixes = member_suffixes(m["ensemble"])
    stacks = [
        recurrent_stack(
            cell=m["cell"],
            units=m["units"],
            depth=m["depth"],
            bidirectional=False,
            dropout=m["dropout"],
            residual=m["residual"],
            return_sequences=True,
            return_state=True,
            all_states=True,
            name=f"stack{suffix}",
        )
        for suffix in suffixes
    ]
    tops = [
        heads(targets, m, stack.output_width, encoder.width, f"heads{suffix}")
        for stack, suffix in zip(stacks, suffixes)
    ]
    served = [top([stack(x)[0], x]) for stack, top in zip(stacks, tops)]
    kinds = list(served[0])
    if len(served) == 1:
        model = keras.Model([readings, seconds], served[0], name="forecast")
    else:
        averaged = {kind: keras.layers.Average(name=kind)([out[kind] for out in served]) for kind in kinds}
        model = keras.Model([readings, seconds], averaged, name="forecast")
    if t["carry_state"]:
        fresh = keras.Input((), name="fresh")
        trained = [
            top([ThroughStream(stack, t["batch_size"], name=f"through_stream{suffix}")([x, fresh]), x])
            for stack, top, suffix in zip(stacks, tops, suffixes)
        ]
        inputs = [readings, seconds, fresh]
    else:
        trained, inputs = served, [readings, seconds]
    if len(trained) == 1 and not t["carry_state"]:
        trainer, names = model, kinds
    else:
        # Members trained side by side in one model, each on its own loss (no co-adaptation: an
        # ensemble, not a wider model); they differ by their initial weights.
        outputs = {f"{kind}{s}": out[kind] for s, out in zip(suffixes, trained) for kind in kinds}
        trainer, names = keras.Model(inputs, outputs, name="forecast_trainer"), list(outputs)  # kind + member suffix
    losses = {"quantities": t["quantity_loss"], "events": "binary_crossentropy"}
    weights = {"quantities": 1.0, "events": t["event_weight"]}
    # The rate decays to zero over the epochs: the last ones refine instead of jumping between minima.
    rate = keras.optimizers.schedules.CosineDecay(t["learning_rate"], t["epochs"] * steps_per_epoch)
    trainer.compile(
        optimizer=training.Adam(rate, clipnorm=1.0),
        loss={name: losses[name.split("_")[0]] for name in names},
        loss_weights={name: weights[name.split("_")[0]] for name in names} if len(names) > 1 else None,
        jit_compile=False,
    )
    return trainer, model


class ThroughStream(keras.layers.Layer):
    """Truncated backpropagation through the stream: in training, a recurrent stack that starts
    each row of a batch from the state that row ended the previous batch with (kept in variables,
    no gradient across batches), or from zeros where `fresh` is 1, the start of a stream (the batches
    come from series.streams: row j of each batch continues row j of the one before). So the model
    learns to run from states carried over thousands of steps, as it is served. Out of training
    (validation) every window starts from zeros, as the windows given then stand alone. The rows
    (`streams`) are the batch size: every training batch must have exactly that many."""

    def __init__(self, stack, streams, **kwargs):
        super().__init__(**kwargs)
        self.stack, self.streams = stack, streams
        self.carried = [
            self.add_weight(shape=(streams, stack.units), initializer="zeros", trainable=False, name=f"carried_{i}")
            for i in range(stack.states_per_layer * stack.depth)
        ]

    def call(self, inputs, training=None):
        x, fresh = inputs
        if not training:
            return self.stack(x, training=training)[0]
        keep = (1.0 - fresh)[:, None]
        y, states = self.stack(x, initial_state=[state * keep for state in self.carried], training=training)
        for variable, state in zip(self.carried, states):
            variable.assign(keras.ops.stop_gradient(state))
        return y

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0][:-1]) + (self.stack.output_width,)

    def get_config(self):
        return {
            **super().get_config(),
            "stack": keras.saving.serialize_keras_object(self.stack),
            "streams": self.streams,
        }

    @classmethod
    def from_config(cls, config):
        return cls(keras.saving.deserialize_keras_object(config.pop("stack")), **config)


def member_suffixes(count):
    """Layer and output name suffixes of the ensemble's members: "" (the first), "_2", "_3", ..."""
    return ["" if i == 0 else f"_{i + 1}" for i in range(count)]


def heads(targets, m, state_width, reading_width, name="heads"):
    """The recurrent state and the current encoded reading at every step → a head per kind of
    target: {"quantities": [batch, time, horizon, Kq], "events": probabilities [batch, time, horizon, Ke]}.
    A hidden ReLU layer sees both (the change over h steps mixes phases and amplitudes: not linear in
    the state); with model.wide a linear map of the reading alone adds to it, so what a regression on
    the current reading can do is there from the start and the rest learns what the history adds."""
    y = keras.Input((None, state_width), name="state")
    x = keras.Input((None, reading_width), name="reading")
    deep = keras.layers.Concatenate(name="with_reading")([y, x])
    if m["head_units"]:
        deep = keras.layers.Dense(m["head_units"], activation="relu", name="head_hidden")(deep)
    outputs = {}
    for kind in ("quantities", "events"):
        k = sum((threshold is None) == (kind == "quantities") for _, _, threshold in targets)
        if not k:
            continue
        z = keras.layers.Dense(m["horizon"] * k, name=f"{kind}_head")(deep)
        if m["wide"]:
            z = keras.layers.Add(name=f"{kind}_plus_wide")(
                [z, keras.layers.Dense(m["horizon"] * k, kernel_initializer="zeros", name=f"{kind}_wide")(x)]
            )
        if kind == "events":
            z = keras.layers.Activation("sigmoid", name="probabilities")(z)
        outputs[kind] = keras.layers.Reshape((-1, m["horizon"], k), name=kind)(z)
    return keras.Model([y, x], outputs, name=name)


def changes(data, features):
    """Each quantity target's change from its current reading, float[T, horizon, Kq]: what the model
    learns, so that it starts from persistence instead of rebuilding the level from its state."""
    kinds = np.array([threshold is None for _, _, threshold in data["targets"]])
    current = data["readings"][:, [features.index(c) for _, c, t in data["targets"] if t is None]]
    return data["future"][..., kinds] - current[:, None, :]


def training_targets(data, features, scale):
    """Quantities: their changes standardised per horizon step with the training period's
    statistics; events as 0/1."""
    out = {}
    kinds = np.array([threshold is None for _, _, threshold in data["targets"]])
    if kinds.any():
        out["quantities"] = (changes(data, features) - scale[0]) / scale[1]
    if (~kinds).any():
        out["events"] = data["future"][..., ~kinds]
    return out


def member_targets(data, features, scale, count):
    """training_targets for each of `count` ensemble members, keyed kind + member suffix: every member
    learns the same."""
    y = training_targets(data, features, scale)
    return {f"{kind}{suffix}": v for suffix in member_suffixes(count) for kind, v in y.items()}


def training_batches(recipe, data, parts, scale, stop):
    """The recipe station's steps before `stop`, then the other stations' `parts` laid end to end,
    as training batches: windows every train.stride steps, shuffled; or with train.carry_state, a
    function of the epoch giving streams (series.streams) cut elsewhere each epoch, as many batches
    as the windows make. Returns (batches, batches per epoch)."""
    t, features, horizon = recipe["train"], recipe["data"]["features"], recipe["model"]["horizon"]
    count = recipe["model"]["ensemble"]
    pieces = [(data["inputs"], data["seconds"], member_targets(data, features, scale, count), stop - horizon)]
    pieces += [
        (p["inputs"], p["seconds"], member_targets(p, features, scale, count), len(p["inputs"]) - horizon)
        for p in parts
    ]
    offsets = np.cumsum([0] + [len(readings) for readings, *_ in pieces])
    spans = [(offset, offset + end) for offset, (*_, end) in zip(offsets, pieces)]
    readings = np.concatenate([piece[0] for piece in pieces])
    seconds = np.concatenate([piece[1] for piece in pieces])
    targets = {k: np.concatenate([piece[2][k] for piece in pieces]) for k in pieces[0][2]}
    window = min(t["window"], data["bounds"][0] - horizon)
    windows = series.windows(
        readings, seconds, targets, spans, window, t["stride"], t["batch_size"], True, t["seed"], t["burn_in"]
    )
    steps = int(windows.cardinality())
    if not t["carry_state"]:
        return windows, steps
    rows = t["batch_size"]
    return lambda epoch: series.streams(
        readings, seconds, targets, spans, window, rows, steps, [t["seed"], epoch]
    ), steps


def fit(recipe, data, encoder, scale, stop, parts, validation, workdir, epochs=None):
    """A fresh model trained on the steps before `stop` (and the pooled `parts`): with early stopping
    on `validation` and its best weights; or, given `epochs`, for that many epochs and the last
    weights (a refit, whose validation period is part of its training data). Returns (the served
    model, the history, seconds of training)."""
    t = recipe["train"]
    batches, steps = training_batches(recipe, data, parts, scale, stop)
    with training.strategy(recipe).scope():
        trainer, model = build(encoder, data["inputs"].shape[1], data["targets"], recipe["model"], t, steps)
    settings = t if epochs is None else {**t, "epochs": epochs, "patience": epochs}
    start = time.perf_counter()
    history = training.fit(trainer, batches, validation, settings, workdir, restore_best=epochs is None)
    return model, history, time.perf_counter() - start


def forecasts(model, data, features, scale, memory):
    """The model's forecasts after every step of the series, in physical units and the recipe's
    target order, float[T, horizon, K]; scored as it is served: one stream over the whole series, so
    the test period follows what came before (with model.memory, each forecast from its frame)."""
    targets = data["targets"]
    kinds = np.array([threshold is None for _, _, threshold in targets])
    x, seconds = data["inputs"][None], data["seconds"][None]
    half = memory // 2
    if memory:
        x, seconds = series.relay_frames(x, half), series.relay_frames(seconds, half)
    out = model.predict([x, seconds], verbose=0)  # compiled, not eager steps
    if memory:
        out = {k: series.relay_pick(v, half, 1, len(data["inputs"])) for k, v in out.items()}
    parts = [np.asarray(out[k][0]) for k in ("quantities", "events") if k in out]
    if "quantities" in out:
        parts[0] = (
            data["readings"][:, [features.index(c) for _, c, q in targets if q is None]][:, None, :]
            + parts[0] * scale[1]
            + scale[0]
        )
    order = np.argsort(np.r_[np.flatnonzero(kinds), np.flatnonzero(~kinds)], kind="stable")
    return np.concatenate(parts, -1)[..., order]


# ------------------------------------------------------------------------------------------- export


def streaming_functions(model, d, targets, horizon, scale, start, memory):
    """The serving functions: whole-sequence `forecast`, `initial_state` and one-reading `step`.
    d: the recipe's data settings; scale: (mean, std) of the quantities' changes [horizon, Kq];
    start: the reading assumed before the first one (the training means), from which missing
    readings are carried forward; memory: model.memory."""
    features = d["features"]
    n_features = len(features)
    # What the stream keeps to read a reading (read_readings), as it keeps the readings' last values:
    # data.anomalies' (and anomalies_too's) trailing means, data.changes' recent readings.
    reading_state = [name for name, used in zip(READING_STATE, (averaged(d), d["changes"])) if used]

    def named_reading_state(values):
        """read_readings' state, those of its parts that this recipe keeps, by name."""
        return {name: v for name, v in zip(READING_STATE, values) if name in reading_state}

    current = [features.index(c) for _, c, t in targets if t is None]
    encoder = model.get_layer("encode")
    count = sum(layer.name.startswith("stack") for layer in model.layers)
    members = [(model.get_layer(f"stack{s}"), model.get_layer(f"heads{s}")) for s in member_suffixes(count)]
    stack = members[0][0]
    kinds = np.array([threshold is None for _, _, threshold in targets])
    order = np.argsort(np.r_[np.flatnonzero(kinds), np.flatnonzero(~kinds)], kind="stable")
    mean, std = np.float32(scale[0]), np.float32(scale[1])  # constants of each graph (not captured tensors)
    per_member = stack.states_per_layer * stack.depth
    layer_states = [f"{'hc'[i % stack.states_per_layer]}{i // stack.states_per_layer + 1}" for i in range(per_member)]
    names = [f"{name}{suffix}" for suffix in member_suffixes(len(members)) for name in layer_states]
    # model.memory: a second copy of every member's state (relay_...), the two restarting from zeros
    # every `memory` readings, half of it apart; each forecast comes from the one that has read more.
    half = memory // 2
    relay = ["readings_seen"] if memory else []
    copies = [*names, *(f"relay_{name}" for name in names)] if memory else names

    def physical(top_outs, filled):
        """The members' head outputs averaged, in physical units, in the recipe's target order."""
        parts = [
            tf.add_n([out[kind] for out in top_outs]) / len(top_outs)
            for kind in ("quantities", "events")
            if kind in top_outs[0]
        ]
        if "quantities" in top_outs[0]:
            parts[0] = (
                tf.gather(filled, current, axis=-1)[:, :, None, :] + parts[0] * tf.constant(std) + tf.constant(mean)
            )
        return tf.gather(tf.concat(parts, -1), order, axis=-1)

    def zero_states(batch):
        return [tf.zeros([batch, stack.units]) for _ in layer_states]

    def forecast(readings, seconds):
        # The forecast follows the last reading; a caller who sends none is told so by name.
        tf.debugging.assert_positive(
            tf.shape(readings)[1], message="forecast: readings hold no time step; give at least one reading"
        )
        batch = tf.shape(readings)[0]
        filled, _ = series.carry_forward(readings, tf.broadcast_to(start, [batch, n_features]))
        x = encoder([read_readings(filled, d, no_history(d, batch))[0], seconds])
        framed = series.relay_frames(x, half) if memory else x
        rows = tf.shape(framed)[0]
        tops = [top([run(framed, initial_state=zero_states(rows), training=False)[0], framed]) for run, top in members]
        if memory:
            steps = tf.shape(readings)[1]
            tops = [{kind: series.relay_pick(v, half, batch, steps) for kind, v in out.items()} for out in tops]
        out = physical(tops, filled)
        return {"forecast": out[:, -1], "forecasts": out}

    def initial_state(batch_size):
        return {
            "last_reading": tf.broadcast_to(start, [batch_size, n_features]),
            **named_reading_state(no_history(d, batch_size)),
            **{name: tf.zeros([batch_size], tf.int32) for name in relay},
            **{name: tf.zeros([batch_size, stack.units]) for name in copies},
        }

    # One reading costs a few hundred small ops; compiled by XLA (export.compiled, as every app's
    # numeric part is served) they cost far less to launch (the same numbers, to float rounding).
    def step(reading, seconds, last_reading, *states):
        last = tf.where(tf.math.is_finite(reading), reading, last_reading)  # carry_forward of one step
        kept = dict(zip(reading_state, states))
        history = [kept.get(name, unused) for name, unused in zip(READING_STATE, no_history(d, 0))]
        given, history = read_readings(last[:, None], d, history)
        states = states[len(reading_state) :]
        # The cells themselves, not the layers' loop over a one-step sequence: the same numbers, fewer ops.
        x = encoder([given, seconds[:, None]])
        batch = tf.shape(reading)[0]
        if memory:  # both copies as one batch of twice the rows (about 0.3 ms more per step on 2 cores)
            seen, states = states[0], states[1:]
            phase = seen % (2 * half)
            restart = tf.concat([phase == 0, phase == half], 0)[:, None]
            pairs = zip(states[: len(names)], states[len(names) :])
            states = [tf.where(restart, 0.0, tf.concat(pair, 0)) for pair in pairs]
            x = tf.concat([x, x], 0)
        tops, new = [], []
        for k, (member, top) in enumerate(members):
            y, member_new = member.step(x[:, 0], list(states[k * per_member : (k + 1) * per_member]))
            tops.append(top([y[:, None], x]))
            new += member_new
        relayed = {}
        if memory:
            older = ((seen >= half) & (phase < half))[:, None, None, None]  # the relay copy has read more
            tops = [{kind: tf.where(older, v[batch:], v[:batch]) for kind, v in out.items()} for out in tops]
            new = [s[:batch] for s in new] + [s[batch:] for s in new]
            relayed = {"readings_seen": seen + 1}
        out = physical(tops, last[:, None])
        return {
            "forecast": out[:, 0],
            "last_reading": last,
            **named_reading_state(history),
            **relayed,
            **dict(zip(copies, new)),
        }

    f = tf.float32
    state_specs = [
        *(tf.TensorSpec([None], tf.int32, name=name) for name in relay),
        *(tf.TensorSpec([None, stack.units], f, name=name) for name in copies),
    ]
    return {
        "serving_default": (
            forecast,
            [
                tf.TensorSpec([None, None, n_features], f, name="readings"),
                tf.TensorSpec([None, None], tf.float64, name="time"),
            ],
        ),
        "forecast": (
            forecast,
            [
                tf.TensorSpec([None, None, n_features], f, name="readings"),
                tf.TensorSpec([None, None], tf.float64, name="time"),
            ],
        ),
        "initial_state": (initial_state, [tf.TensorSpec([], tf.int32, name="batch_size")]),
        "step": (
            export.compiled(step, model.weights),
            [
                tf.TensorSpec([None, n_features], f, name="reading"),
                tf.TensorSpec([None], tf.float64, name="time"),
                tf.TensorSpec([None, n_features], f, name="last_reading"),
                *(
                    tf.TensorSpec([None, *v.shape[1:]], f, name=k)
                    for k, v in named_reading_state(no_history(d, 0)).items()
                ),
                *state_specs,
            ],
        ),
    }, ["last_reading", *reading_state, *relay, *copies]


# --------------------------------------------------------------------------------------- evaluation


def evaluate(data, predicted, encoded, season, horizon, event_window, period=None):
    """Rows for the quantity and the event tables over `period` (start, stop; the test period by
    default), and the curves and series the plots need. predicted: the model's forecasts at every step
    of the series [T, horizon, K]."""
    a, b, n = data["bounds"]
    b, n = period or (b, n)
    frame, future, seen = data["frame"], data["future"], data["future_seen"]
    truth = np.where(seen, future, np.nan)
    horizons = [h for h in HORIZONS if h <= horizon]
    test = slice(b, n)
    quantity_rows, event_rows, curves, plots = [], [], [], {}
    for k, (name, column, threshold) in enumerate(data["targets"]):
        values = frame[column].to_numpy(float)
        if threshold is None:
            baselines = {
                "persistence": evaluation.persistence(values, horizon),
                "seasonal": evaluation.seasonal_naive(values, season, horizon),
            }
            for h in horizons:
                row = {"target": name, "h": h}
                for label, forecast in (("model", predicted[:, :, k]), *baselines.items()):
                    scores = evaluation.errors(truth[test, h - 1, k], forecast[test, h - 1])
                    row.update({f"{label}_{name}": value for name, value in scores.items()})
                quantity_rows.append(row)
            plots[name] = baselines["persistence"]
            continue
        now = pd.Series(values > threshold).rolling(event_window, min_periods=1).max().to_numpy(bool)
        climatology = np.nanmean(truth[:a, :, k], axis=0)
        baselines = {
            "persistence": evaluation.event_persistence(now[:a], truth[:a, :, k], now),
            "logreg": _logistic(encoded, truth[:, :, k], a, horizons, horizon),
        }
        for h in horizons:
            y, reference = truth[test, h - 1, k], np.full(n - b, climatology[h - 1])
            row = {
                "target": name,
                "h": h,
                "rate": float(np.nanmean(y)),
                "climatology_brier": evaluation.brier(y, reference),
                "model_brier": evaluation.brier(y, predicted[test, h - 1, k]),
            }
            for label, forecast in (("model", predicted[:, :, k]), *baselines.items()):
                row[f"{label}_skill"] = evaluation.brier_skill(y, forecast[test, h - 1], reference)
            for label, forecast in (("model", predicted[:, :, k]), *baselines.items()):
                row[f"{label}_auc"] = evaluation.roc_auc(y, forecast[test, h - 1])
            event_rows.append(row)
        curves += [(f"{name} +{h}", truth[test, h - 1, k], predicted[test, h - 1, k]) for h in horizons[:3]]
        plots[name] = baselines["persistence"]
    return quantity_rows, event_rows, curves, plots


def _logistic(encoded, truth, a, horizons, horizon):
    """P(event at t+h) from the current (encoded) reading by a logistic regression per horizon step
    fitted on the training period: float[T, horizon], NaN at the steps not reported."""
    out = np.full(truth.shape, np.nan)
    for h in horizons:
        y = truth[:a, h - 1]
        keep = np.isfinite(y)
        if len(np.unique(y[keep])) < 2:
            out[:, h - 1] = np.nanmean(y)
            continue
        fitted = LogisticRegression(max_iter=1000).fit(encoded[:a][keep], y[keep].astype(int))
        out[:, h - 1] = fitted.predict_proba(encoded)[:, 1]
    return out


def plot_week(data, predicted, persistence, lead, path, description):
    """The first week of the test period: truth, the model's and persistence's forecasts made `lead` steps before."""
    _, b, n = data["bounds"]
    steps = min(n - b, max(lead + 2, round(7 * series.DAY / data["interval"].total_seconds())))
    span = slice(b, b + steps)
    panels = []
    for k, (name, column, threshold) in enumerate(data["targets"]):
        truth = data["frame"][column].to_numpy(float)
        if threshold is not None:
            truth = (truth > threshold).astype(float)
        made = np.arange(b, b + steps) - lead  # forecasts for these steps were made `lead` steps earlier
        panels.append(
            (
                name if threshold is None else f"P({name})",
                {
                    "truth": truth[span],
                    "model": predicted[made, lead - 1, k],
                    "persistence": persistence[name][made, lead - 1],
                },
            )
        )
    evaluation.plot_forecast(
        data["frame"].index[span], panels, path, f"test period, forecasts made {lead} steps ahead ({description})"
    )


# ---------------------------------------------------------------------------------------------- run


def run(recipe, output_root, log=print):
    check(recipe)
    d, m, t = recipe["data"], recipe["model"], recipe["train"]
    data = prepare(recipe, log)
    a, b, n = data["bounds"]
    horizon, targets, features = m["horizon"], data["targets"], d["features"]
    angles = [f in d["angles"] for f in features]
    # A time of day only where readings come more often than daily.
    periods = [p for p in d["time_features"] if p != "day" or data["interval"].total_seconds() < series.DAY]
    # Whether each event is happening now, where its column is a feature: persistence's whole knowledge.
    now = [(features.index(c), q) for _, c, q in targets if q is not None and c in features]
    read_angles = angles + [False] * appended(d)  # the appended departures and changes are no angles
    encoder = series.fitted_encoder(data["inputs"][:a], data["seconds"][:a], read_angles, periods, now)
    delta = changes(data, features)[:a]
    scale = (np.nanmean(delta, 0), np.nanstd(delta, 0) + 1e-6)
    window = min(t["window"], a - horizon)
    burn_in = min(t["burn_in"], a)  # the validation windows warm up on the steps before them
    validation = series.windows(
        data["inputs"],
        data["seconds"],
        member_targets(data, features, scale, m["ensemble"]),
        [(a - burn_in, b - horizon)],
        min(window, b - a - horizon),
        max(1, window // 2),
        t["batch_size"],
        burn_in=burn_in,
    )
    if t["carry_state"]:  # validation windows stand alone: each one fresh
        validation = validation.map(lambda x, y: ((*x, tf.ones(tf.shape(x[1])[:1])), y))
    parts = other_stations(recipe, data, log)
    log(
        f"targets: {', '.join(name for name, _, _ in targets)}; {len(features)} features → {encoder.width} encoded "
        f"(time of {' and of '.join(periods) or 'nothing'}"
        + (f"; {', '.join(departed(d))} as departures from their trailing mean" if departed(d) else "")
        + (f"; {', '.join(also_departed(d))} as levels and departures" if also_departed(d) else "")
        + (f"; changes over {', '.join(map(str, d['changes']))} steps" if d["changes"] else "")
        + f"); sequences of {window} steps "
        + (f"carried through {t['batch_size']} streams" if t["carry_state"] else f"every {t['stride']}")
        + (f" after {t['burn_in']} steps of burn-in" if t["burn_in"] else "")
        + f", horizon {horizon}"
    )
    workdir = training.run_dir(output_root, recipe)
    model, history, seconds = fit(recipe, data, encoder, scale, a, parts, validation, workdir)
    predicted = forecasts(model, data, features, scale, m["memory"])
    # The regression reads the current reading as it is, whatever the model reads.
    plain = series.fitted_encoder(data["readings"][:a], data["seconds"][:a], angles, periods, now)
    encoded = np.asarray(plain([data["readings"][None], data["seconds"][None]])[0])
    season, season_name = season_of(data["interval"], n)
    # The validation period's scores: the ones to choose a recipe by (the test period's are for reporting).
    validation_rows = evaluate(data, predicted, encoded, season, horizon, d["event_window"], (a, b))[:2]
    refit = {}
    if t["refit"]:
        # Rolling origin, as an operational forecaster works: every reading before the test period
        # trains the model that forecasts it, for the number of epochs that validation chose. The
        # normalisation stays the training period's: the recipe was chosen with it.
        epochs = int(np.argmin(history["val_loss"])) + 1
        log(f"refit: trained again from the same initial weights on training + validation, epochs: {epochs}")
        training.seed_everything(t["seed"])
        parts = other_stations(recipe, data, log, until=b)
        # Its validation loss means nothing (the period is trained on): one batch, as the loop needs some.
        model, refit_history, refit_seconds = fit(
            recipe, data, encoder, scale, b, parts, validation.take(1), workdir / "refit", epochs
        )
        predicted = forecasts(model, data, features, scale, m["memory"])
        refit = {"epochs": epochs, "history": refit_history, "train_seconds": round(refit_seconds, 1)}
    quantity_rows, event_rows, curves, persistence = evaluate(
        data, predicted, encoded, season, horizon, d["event_window"]
    )

    interval = series.describe(data["interval"])
    log(
        f"\nvalidation period: {data['frame'].index[a]} to {data['frame'].index[b - 1]} ({b - a} steps), the one "
        f"to compare recipes by (MAE in the data's units, Brier skill)"
    )
    shown = ("_mae", "_bias", "_skill")
    for rows in validation_rows:
        if rows:
            log(evaluation.table(rows, [c for c in rows[0] if c in ("target", "h") or c.endswith(shown)]))
    log(
        f"\ntest period: {data['frame'].index[b]} to {data['frame'].index[-1]} ({n - b} steps of {interval}); "
        f"training took {seconds + refit.get('train_seconds', 0):.0f} s"
        + (f" ({seconds:.0f} s the validated fit, {refit['train_seconds']:.0f} s the refit)" if refit else "")
    )
    if quantity_rows:
        log(f"quantities, in the data's units (persistence: the last value; seasonal: {season_name}, {season} steps)")
        log(evaluation.table(quantity_rows, list(quantity_rows[0])))
    if event_rows:
        log(
            "events (skill: Brier skill against climatology, the training frequency; persistence: "
            "P(event at t+h | event now or not) from training; logreg: logistic regression on the current reading)"
        )
        log(evaluation.table(event_rows, list(event_rows[0])))

    units = dict(u.split("=", 1) for u in d["units"] if "=" in u)
    lead = min(6, horizon)
    headline = {f"{r['target']}_mae_h{r['h']}": r["model_mae"] for r in quantity_rows if r["h"] in (lead, horizon)}
    headline.update({f"{r['target']}_skill_h{r['h']}": r["model_skill"] for r in event_rows if r["h"] == 1})
    endpoints, state_names = streaming_functions(
        model, d, targets, horizon, scale, tf.constant(np.nanmean(data["readings"][:a], 0), "float32"), m["memory"]
    )
    metadata = {
        "features": [{"name": f, "unit": units.get(f, ""), "angle": f in d["angles"]} for f in features],
        "targets": [
            {
                "name": name,
                "column": column,
                "kind": "quantity" if threshold is None else "event",
                "threshold": threshold,
                "unit": units.get(column, "") if threshold is None else "probability",
            }
            for name, column, threshold in targets
        ],
        "interval": interval,
        "interval_seconds": data["interval"].total_seconds(),
        "horizon": horizon,
        "time_input": "unix seconds (UTC), float64, one per reading",
        "missing_readings": "NaN (or any non-finite value) in a reading is replaced by that feature's last "
        "finite value; before any, by its training mean",
        "anomalies": {
            "features": departed(d),
            "with_levels": also_departed(d),
            "reading": "each of features is read as its departure from its trailing mean, an exponential average "
            f"with weight 1/{d['anomaly_steps']} on each new reading, started by the first reading; each of "
            "with_levels as its level and its departure; the state trailing_mean, features then with_levels",
        },
        "changes": {
            "steps": d["changes"],
            "features": changed(d),
            "reading": "after the features (and with_levels' departures): each of features' change over each of steps "
            "(its reading less the one that many steps before, 0 until the stream has read that many); the state "
            "recent_readings holds the last max(steps) readings, oldest first",
        },
        "state": state_names,
        "memory": (
            f"each forecast reads the last {m['memory'] // 2 + 1} to {m['memory']} readings: the recurrent states "
            f"and their relay_ copies restart from zeros every {m['memory']} readings, half of it apart"
            if m["memory"]
            else "all readings: the state runs on over the whole stream"
        ),
        "station": d["station"] if d["station_column"] else "",
        "data": {
            "source": d["source"],
            "steps": {"train": a, "validation": b - a, "test": n - b},
            "test_period": [str(data["frame"].index[b]), str(data["frame"].index[-1])],
            "columns": {"time": d["time_column"], "date": d["date_column"], "station": d["station_column"]},
        },
        "baselines": {"seasonal": f"{season_name} ({season} steps)"},
        "metrics": {
            "headline": headline,
            "quantities": quantity_rows,
            "events": event_rows,
            "validation": dict(zip(("quantities", "events"), validation_rows)),
        },
        "recipe": recipe.flat(),
        "history": history,
        "train_seconds": round(seconds, 1),
        "refit": refit,
    }
    description = f"{d['source']}, {d['station']}" if d["station_column"] else d["source"]
    extras = [
        ("training_curves.png", lambda p: evaluation.plot_history(history, p)),
        ("forecast.png", lambda p: plot_week(data, predicted, persistence, lead, p, description)),
    ]
    if curves:
        extras.append(("reliability.png", lambda p: evaluation.plot_reliability(curves, p)))
    return export.save(
        output_root, recipe, endpoints=endpoints, track=[model], keras_model=model, metadata=metadata, extras=extras
    )
