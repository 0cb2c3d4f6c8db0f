"""The forecast's data and features: the series on its regular grid, what the model reads of each
reading (data.anomalies' departures from their trailing mean), the other stations pooled into
training, and the training targets (each quantity's standardised change from its current reading)."""

from dataclasses import dataclass

import numpy as np
import pandas as pd
import tensorflow as tf

from nlpapps.data import series
from nlpapps.errors import UserError


@dataclass
class Series:
    """One station's series, filled onto its grid: its readings [T, features] in physical units, what
    the model reads of them [T, inputs], their unix seconds [T], and each target's next `horizon`
    values [T, horizon, K] (NaN past the end). The recipe station's series carries its frame, the
    observed mask, the grid's interval and the train/validation/test bounds (a, b, n) too."""

    readings: np.ndarray
    inputs: np.ndarray
    seconds: np.ndarray
    future: np.ndarray
    targets: list
    frame: pd.DataFrame | None = None
    future_seen: np.ndarray | None = None
    interval: pd.Timedelta | None = None
    bounds: tuple = (0, 0, 0)

    @property
    def quantity(self):
        """bool[K]: which targets are quantities (the rest are events)."""
        return np.array([threshold is None for _, _, threshold in self.targets])

    def current(self, features):
        """Each quantity target's current reading [T, Kq]."""
        return self.readings[:, [features.index(c) for _, c, t in self.targets if t is None]]


def check(recipe):
    """Refuse data settings that cannot be read before any work starts."""
    d = recipe["data"]
    events = [column for _, column, threshold in series.parse_targets(d["targets"]) if threshold is not None]
    if wrong := [f for f in departed(d) if f in d["angles"] or f in events]:
        raise UserError(
            f"data.anomalies: {wrong[0]!r} is an angle or an event's column (whose level makes the event), "
            f"which cannot be read as a departure from its mean; leave it out of data.anomalies"
        )


def prepare(recipe, log, split=None):
    """The recipe station's series with its gaps filled, its periods (`split`: step counts or
    fractions, data.split by default) and the training arrays."""
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
    a, b = series.chronological(n, split or d["split"])
    # Every period must hold one sequence and its horizon.
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
    readings = filled[d["features"]].to_numpy("float32")
    return Series(
        readings=readings,
        inputs=model_inputs(readings, d),
        seconds=series.unix_seconds(filled.index),
        future=future,
        targets=targets,
        frame=filled,
        future_seen=future_seen,
        interval=interval,
        bounds=(a, b, n),
    )


def departed(d):
    """The features of data.anomalies that are among data.features (so the default's temp and dewp
    need no change for a file without a dew point): the ones read as departures."""
    return [f for f in d["anomalies"] if f in d["features"]]


def no_history(d, batch):
    """A stream's trailing means before its first reading: none yet (NaN)."""
    return tf.fill([batch, len(departed(d))], np.nan)


def model_inputs(readings, d):
    """What the model reads of readings [T, features] (read_readings), over the series from its first step."""
    return np.asarray(read_readings(tf.constant(readings[None]), d, no_history(d, 1))[0][0])


def read_readings(filled, d, mean):
    """What the model reads of carried-forward readings [batch, T, features], and the trailing means
    after them (`mean`: those before them, no_history(d) at a stream's start): the departed(d)
    features as their departures from their trailing mean (series.departures), the rest as they are."""
    columns = [d["features"].index(f) for f in departed(d)]
    if not columns:
        return filled, mean
    return series.departures(filled, columns, 1 / d["anomaly_steps"], mean)


def other_stations(recipe, data, log, until=None):
    """The training periods of the other stations of data.train_stations in the same file: more
    sequences of the same weather (stations the file lacks are left out, and said so). Each ends
    where the recipe station's training period ends (or its step `until`: a refit's or a fold's end),
    so no step that is scored is ever trained on. Empty for a file without the station column."""
    d, horizon = recipe["data"], recipe["model"]["horizon"]
    others = [s for s in d["train_stations"] if s != d["station"]]
    present = series.stations(d["source"], d["station_column"], d["skip_rows"]) if others else set()
    if not present:
        return []
    if absent := [s for s in others if s not in present]:
        log(f"pooled: no station {', '.join(absent)} of data.train_stations in {d['source']}; left out")
        others = [s for s in others if s in present]
    end = data.frame.index[data.bounds[0] if until is None else until]
    columns = [*d["features"], *(c for _, c, _ in data.targets)]
    parts = []
    for station in others:
        origin = f"{d['source']}, station {station} of data.train_stations"
        frame, _, _ = series.load(d["source"], {**d, "station": station}, columns, data.interval, origin)
        frame = frame[frame.index < end]
        if len(frame) < horizon + 8:
            continue  # nothing of this station's readings lies in the training period
        filled, observed = series.fill_gaps(frame, d["max_gap"], d["angles"], origin)
        future, _ = series.target_arrays(filled, observed, data.targets, horizon, d["event_window"])
        readings = filled[d["features"]].to_numpy("float32")
        parts.append(
            Series(readings, model_inputs(readings, d), series.unix_seconds(filled.index), future, data.targets)
        )
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


def changes(data, features):
    """Each quantity target's change from its current reading, float[T, horizon, Kq]: what the model
    learns, so that it starts from persistence instead of rebuilding the level from its state."""
    return data.future[..., data.quantity] - data.current(features)[:, None, :]


def change_scale(data, features, stop):
    """The mean and standard deviation [horizon, Kq] of the quantities' changes before step `stop`."""
    delta = changes(data, features)[:stop]
    return np.nanmean(delta, 0), np.nanstd(delta, 0) + 1e-6


def training_targets(data, features, scale):
    """Quantities: their changes standardised per horizon step with the training period's
    statistics; events as 0/1."""
    out, kinds = {}, data.quantity
    if kinds.any():
        out["quantities"] = (changes(data, features) - scale[0]) / scale[1]
    if (~kinds).any():
        out["events"] = data.future[..., ~kinds]
    return out


def time_periods(d, interval):
    """The phases of the time the model reads: a time of day only where readings come more often than daily."""
    return [p for p in d["time_features"] if p != "day" or interval.total_seconds() < series.DAY]


def encoders(d, data, stop):
    """The model's Encode layer, standardised on the steps before `stop`, and the current readings
    as a regression reads them (encoded as they are, whatever the model reads): float[T, encoded]."""
    features, periods = d["features"], time_periods(d, data.interval)
    angles = [f in d["angles"] for f in features]
    # Whether each event is happening now, where its column is a feature: persistence's whole knowledge.
    now = [(features.index(c), q) for _, c, q in data.targets if q is not None and c in features]
    encoder = series.fitted_encoder(data.inputs[:stop], data.seconds[:stop], angles, periods, now)
    plain = series.fitted_encoder(data.readings[:stop], data.seconds[:stop], angles, periods, now, name="plain")
    return encoder, np.asarray(plain([data.readings[None], data.seconds[None]])[0])
