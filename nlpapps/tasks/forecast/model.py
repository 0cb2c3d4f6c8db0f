"""The forecast's model: encoded readings → `model.ensemble` unidirectional recurrent stacks, each
with its heads → their forecasts averaged; the training batches and the fit."""

import time

import keras
import numpy as np

from nlpapps import training
from nlpapps.blocks import recurrent_stack
from nlpapps.data import series
from nlpapps.tasks.forecast import data as forecast_data

QUANTILES = (0.1, 0.9)  # the quantiles of each quantity forecast besides its mean, in this order


def member_suffixes(count):
    """Layer and output name suffixes of the ensemble's members: "" (the first), "_2", "_3", ..."""
    return ["" if i == 0 else f"_{i + 1}" for i in range(count)]


def build(encoder, n_features, targets, m, t, steps_per_epoch):
    """Raw readings and their times → Encode → `model.ensemble` members, each a unidirectional
    recurrent stack (all its states out, so it can be stepped) and its heads (a model of its own,
    which stepping reuses) → their forecasts averaged. Returns (the model to train: every member's
    outputs, each with its own loss; the averaged model, which is served and never compiled)."""
    readings = keras.Input((None, n_features), name="readings")
    seconds = keras.Input((None,), dtype="float64", name="time")
    x = encoder([readings, seconds])
    suffixes = member_suffixes(m["ensemble"])
    served = []
    for suffix in suffixes:
        stack = recurrent_stack(
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
        top = heads(targets, m, stack.output_width, encoder.width, f"heads{suffix}")
        served.append(top([stack(x)[0], x]))
    kinds = list(served[0])
    if len(served) == 1:
        model = keras.Model([readings, seconds], served[0], name="forecast")
    else:
        averaged = {kind: keras.layers.Average(name=kind)([out[kind] for out in served]) for kind in kinds}
        model = keras.Model([readings, seconds], averaged, name="forecast")
    # Members trained side by side in one model, each on its own loss (no co-adaptation: an ensemble,
    # not a wider model); they differ by their initial weights.
    outputs = {f"{kind}{s}": out[kind] for s, out in zip(suffixes, served) for kind in kinds}
    trainer = keras.Model([readings, seconds], outputs, name="forecast_trainer")
    losses = {"quantities": "mse", "quantiles": pinball, "events": "binary_crossentropy"}
    weights = {"quantities": 1.0, "quantiles": 1.0, "events": t["event_weight"]}
    # The rate decays to zero over the epochs: the last ones refine instead of jumping between minima.
    rate = keras.optimizers.schedules.CosineDecay(t["learning_rate"], t["epochs"] * steps_per_epoch)
    trainer.compile(
        optimizer=training.Adam(rate, clipnorm=1.0),
        loss={name: losses[name.split("_")[0]] for name in outputs},
        loss_weights={name: weights[name.split("_")[0]] for name in outputs},
        jit_compile=False,
    )
    return trainer, model


def pinball(y_true, y_pred):
    """The pinball (quantile) loss of each of QUANTILES: y_true [..., Kq], y_pred [..., Kq, len(QUANTILES)]."""
    if len(y_true.shape) < len(y_pred.shape):
        y_true = keras.ops.expand_dims(y_true, -1)
    error = y_true - y_pred
    q = keras.ops.convert_to_tensor(QUANTILES, dtype=y_pred.dtype)
    return keras.ops.mean(keras.ops.maximum(q * error, (q - 1) * error), axis=-1)


def heads(targets, m, state_width, reading_width, name="heads"):
    """The recurrent state and the current encoded reading at every step → a head per kind of
    target: {"quantities": [batch, time, horizon, Kq], "quantiles": their QUANTILES [batch, time,
    horizon, Kq, 2], "events": probabilities [batch, time, horizon, Ke]}. A hidden ReLU layer sees
    both; with model.wide a linear map of the reading alone adds to it, so what a regression on the
    current reading can do is there from the start and the rest learns what the history adds."""
    y = keras.Input((None, state_width), name="state")
    x = keras.Input((None, reading_width), name="reading")
    deep = keras.layers.Concatenate(name="with_reading")([y, x])
    if m["head_units"]:
        deep = keras.layers.Dense(m["head_units"], activation="relu", name="head_hidden")(deep)
    kq = sum(threshold is None for _, _, threshold in targets)
    sizes = {"quantities": (kq,), "quantiles": (kq, len(QUANTILES)), "events": (len(targets) - kq,)}
    outputs = {}
    for kind, shape in sizes.items():
        if not shape[0]:
            continue
        width = m["horizon"] * int(np.prod(shape))
        z = keras.layers.Dense(width, name=f"{kind}_head")(deep)
        if m["wide"]:
            z = keras.layers.Add(name=f"{kind}_plus_wide")(
                [z, keras.layers.Dense(width, kernel_initializer="zeros", name=f"{kind}_wide")(x)]
            )
        if kind == "events":
            z = keras.layers.Activation("sigmoid", name="probabilities")(z)
        outputs[kind] = keras.layers.Reshape((-1, m["horizon"], *shape), name=kind)(z)
    return keras.Model([y, x], outputs, name=name)


def member_targets(data, features, scale, count):
    """The training targets of each of `count` ensemble members, keyed kind + member suffix: every
    member learns the same; a quantity's quantiles learn from its standardised change as its mean does."""
    y = forecast_data.training_targets(data, features, scale)
    if "quantities" in y:
        y["quantiles"] = y["quantities"]
    return {f"{kind}{suffix}": v for suffix in member_suffixes(count) for kind, v in y.items()}


def training_batches(recipe, data, parts, scale, stop):
    """The recipe station's steps before `stop`, then the other stations' `parts` laid end to end, as
    training batches: windows every train.stride steps, shuffled; with the number of batches."""
    t, features, horizon = recipe["train"], recipe["data"]["features"], recipe["model"]["horizon"]
    count = recipe["model"]["ensemble"]
    pieces = [(data.inputs, data.seconds, member_targets(data, features, scale, count), stop - horizon)]
    pieces += [(p.inputs, p.seconds, member_targets(p, features, scale, count), len(p.inputs) - horizon) for p in parts]
    offsets = np.cumsum([0] + [len(readings) for readings, *_ in pieces])
    spans = [(offset, offset + end) for offset, (*_, end) in zip(offsets, pieces)]
    readings = np.concatenate([piece[0] for piece in pieces])
    seconds = np.concatenate([piece[1] for piece in pieces])
    targets = {k: np.concatenate([piece[2][k] for piece in pieces]) for k in pieces[0][2]}
    window = min(t["window"], stop - horizon)
    windows = series.windows(readings, seconds, targets, spans, window, t["stride"], t["batch_size"], True, t["seed"])
    return windows, int(windows.cardinality())


def fit(recipe, data, encoder, scale, stop, parts, validation, workdir, epochs=None, log=print):
    """A fresh model trained on the steps before `stop` (and the pooled `parts`): with early stopping
    on `validation` and its best weights; or, given `epochs`, for that many epochs and the last
    weights (a refit, whose validation period is part of its training data). Returns (the served
    model, the history, seconds of training)."""
    t = recipe["train"]
    batches, steps = training_batches(recipe, data, parts, scale, stop)
    with training.strategy(recipe).scope():
        trainer, model = build(encoder, data.inputs.shape[1], data.targets, recipe["model"], t, steps)
    settings = t if epochs is None else {**t, "epochs": epochs, "patience": epochs}
    start = time.perf_counter()
    history = training.fit(trainer, batches, validation, settings, workdir, restore_best=epochs is None)
    return model, history, time.perf_counter() - start


def validation_windows(recipe, data, features, scale, start, stop):
    """The windows of steps [start, stop) for early stopping (their targets within the period)."""
    t, horizon = recipe["train"], recipe["model"]["horizon"]
    window = min(t["window"], stop - start - horizon)
    return series.windows(
        data.inputs,
        data.seconds,
        member_targets(data, features, scale, recipe["model"]["ensemble"]),
        [(start, stop - horizon)],
        window,
        max(1, window // 2),
        t["batch_size"],
    )
