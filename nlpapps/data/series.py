"""Time series: reading a table of timed readings onto a regular grid, gap filling, targets, the
in-graph encoding and normalisation of raw readings, and tf.data windows for training.

A series is a pandas DataFrame indexed by UTC timestamps at one regular interval. Readings stay in
their physical units up to the model: the `Encode` layer (sin-cos of angles and of the time of day
and of year, then the training period's mean and standard deviation) runs inside the model, so the
export takes raw readings exactly as a station reports them.
"""

import math
import re

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from nlpapps.data import sources
from nlpapps.errors import UserError, excerpt, listing

DAY, YEAR = 86400.0, 365.2425 * 86400.0
PERIODS = {"day": DAY, "year": YEAR}
CLIP = 50.0  # encoded readings further than this many standard deviations out are clipped
TARGET = re.compile(r"^\s*([^<>]+?)\s*(?:>\s*(-?[0-9.]+)\s*)?$")  # "temp" or "precip > 0"


def read_table(spec, *, skip_rows=0, dtype=str, nrows=None):
    """The raw table of a CSV/TSV file (optionally .gz) as strings; 'NA' and empty cells are missing."""
    path = sources.path_of(spec, (".csv.gz", ".tsv.gz"))
    sep = "\t" if ".tsv" in str(path).lower() else ","
    try:
        return pd.read_csv(
            path,
            sep=sep,
            skiprows=skip_rows,
            dtype=dtype,
            keep_default_na=False,
            na_values=["", "NA", "NaN", "nan", "null"],
            nrows=nrows,
        )
    except FileNotFoundError:
        raise UserError(f"data file not found: {spec}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as e:
        raise UserError(f"{spec}: cannot read as CSV ({str(e).splitlines()[0]})") from None


def stations(spec, column, skip_rows=0):
    """The values of the file's station column; empty when it has no such column."""
    if not column or column not in read_table(spec, skip_rows=skip_rows, nrows=0):
        return set()
    return set(read_table(spec, skip_rows=skip_rows)[column].dropna())


def timestamps(table, time_column, date_column="", origin="data"):
    """UTC timestamps of every row, from a time column or a date column plus a time column."""
    for column in filter(None, (date_column, time_column)):
        if column not in table:
            raise UserError(f"{origin}: no time column {column!r}; columns are: {listing(table.columns)}")
    text = table[time_column].astype(str)
    if date_column:
        text = table[date_column].astype(str) + " " + text
    parsed = pd.to_datetime(text, utc=True, errors="coerce", format="mixed")
    if parsed.isna().any():
        row = int(np.flatnonzero(parsed.isna())[0])
        raise UserError(f"{origin}: unreadable time '{excerpt(text.iloc[row])}' in row {row + 1}")
    return pd.DatetimeIndex(parsed)


def numeric(table, columns, origin="data"):
    """The columns as floats; missing cells NaN, any other non-number refused, naming the row."""
    out = {}
    for column in columns:
        if column not in table:
            raise UserError(f"{origin}: no column {column!r}; columns are: {listing(table.columns)}")
        values = pd.to_numeric(table[column], errors="coerce")
        bad = values.isna() & table[column].notna()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise UserError(
                f"{origin}: column {column!r} holds a non-numeric value "
                f"'{excerpt(table[column].iloc[row])}' in row {row + 1}"
            )
        out[column] = values.to_numpy(float)
    return pd.DataFrame(out, index=table.index)


def parse_targets(targets, origin="data.targets"):
    """[(name, column, threshold or None)]: "temp" is a quantity, "precip > 0" an event."""
    parsed = []
    for target in targets:
        match = TARGET.match(str(target))
        if not match:
            raise UserError(f"{origin}: {target!r} is neither a column name nor 'column > number'")
        column, threshold = match.group(1), match.group(2)
        parsed.append((str(target).replace(" ", ""), column, None if threshold is None else float(threshold)))
    if not parsed:
        raise UserError(f"{origin}: name at least one target")
    return parsed


def describe(interval):
    """'1 hour', '1 day', '15 minutes', ..."""
    seconds = interval.total_seconds()
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds % size == 0:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} seconds"


def load(spec, d, columns, interval=None, origin=None):
    """The `columns` of `spec` on a regular grid, before gap filling: (frame, interval, log lines).

    d: the recipe's data section (time_column, date_column, skip_rows, station_column, station);
    interval: the grid's step, inferred from the data (the median step) when None. Duplicated or
    unsorted timestamps are refused: they mean the file is not one station's series."""
    origin = origin or spec
    notes = []
    table = read_table(spec, skip_rows=d["skip_rows"])
    if d["station_column"] and d["station_column"] in table:
        stations = sorted(set(table[d["station_column"]].dropna()))
        if d["station"] not in stations:
            raise UserError(
                f"{origin}: no station {d['station']!r} in column {d['station_column']!r}; "
                f"stations: {', '.join(map(str, stations)) or 'none, the file has no readings'}"
            )
        table = table[table[d["station_column"]] == d["station"]].reset_index(drop=True)
        notes.append(f"station {d['station']}")
    times = timestamps(table, d["time_column"], d["date_column"], origin)
    frame = numeric(table, list(dict.fromkeys(columns)), origin)
    frame.index = times
    if times.has_duplicates:
        raise UserError(
            f"{origin}: duplicated timestamp {times[times.duplicated()][0]}; one reading per time "
            f"is expected (several stations? set data.station_column)"
        )
    if not times.is_monotonic_increasing:
        row = int(np.flatnonzero(np.diff(unix_seconds(times)) < 0)[0]) + 1
        raise UserError(
            f"{origin}: timestamps are not sorted: row {row + 1} ({times[row]}) comes before the row above it"
        )
    if len(times) < 2 and (interval is None or not len(times)):
        raise UserError(f"{origin}: {len(times)} readings; far too few for a series")
    interval = pd.Series(times).diff().median() if interval is None else interval
    # Readings between grid points (a 10:51 METAR for 11:00) average into their interval.
    grid = frame.resample(interval, origin=times[0]).mean()
    notes.append(f"{len(times)} readings every {describe(interval)} from {times[0]} to {times[-1]}")
    return grid, interval, notes


def fill_gaps(frame, max_gap, angles=(), origin="data"):
    """Interpolate gaps of up to `max_gap` steps (angles through their sine and cosine); refuse a
    column that is all missing or has a longer gap. Returns (filled frame, observed mask)."""
    observed = frame.notna()
    for column in frame:
        missing = observed[column].to_numpy() == 0
        if missing.all():
            raise UserError(f"{origin}: column {column!r} has no values; drop it from data.features/data.targets")
        runs = _runs(missing)
        if runs and max(r[1] for r in runs) > max_gap:
            start, length = max(runs, key=lambda r: r[1])
            raise UserError(
                f"{origin}: column {column!r} is missing for {length} steps in a row from "
                f"{frame.index[start]}; data.max_gap is {max_gap}: raise it or drop the column"
            )
    filled = frame.copy()
    plain = [c for c in frame if c not in angles]
    filled[plain] = frame[plain].interpolate(limit_direction="both")
    for column in [c for c in frame if c in angles]:
        radians = np.deg2rad(frame[column])
        s, c = (pd.Series(f(radians), index=frame.index).interpolate(limit_direction="both") for f in (np.sin, np.cos))
        filled[column] = np.rad2deg(np.arctan2(s, c)) % 360
    return filled, observed


def _runs(missing):
    """(start, length) of every run of True."""
    edges = np.diff(np.r_[0, missing.astype(int), 0])
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return list(zip(starts.tolist(), (ends - starts).tolist()))


def target_arrays(frame, observed, targets, horizon, event_window=1):
    """For every step t: each target's values at t+1 … t+horizon, float[T, horizon, K], and whether
    each was observed (events count as observed when every step of their window was). An event is
    `column > threshold` anywhere in the `event_window` steps that end at t+h. Steps past the end are NaN."""
    n = len(frame)
    values, seen = [], []
    for _, column, threshold in targets:
        v = frame[column].to_numpy(float)
        o = observed[column].to_numpy(bool)
        if threshold is not None:
            v = (pd.Series(v > threshold).rolling(event_window, min_periods=1).max()).to_numpy(float)
            o = pd.Series(o).rolling(event_window, min_periods=1).min().to_numpy(bool)
        values.append(v)
        seen.append(o)
    values, seen = np.stack(values, -1), np.stack(seen, -1)  # [T, K]
    future = np.full((n, horizon, len(targets)), np.nan)
    future_seen = np.zeros((n, horizon, len(targets)), bool)
    for h in range(1, horizon + 1):
        future[: n - h, h - 1] = values[h:]
        future_seen[: n - h, h - 1] = seen[h:]
    return future, future_seen


def chronological(n, fractions):
    """Boundaries of the train/validation/test periods: [0, a), [a, b), [b, n)."""
    cuts = np.cumsum(np.array(fractions[:2]) / sum(fractions) * n).round().astype(int)
    return int(cuts[0]), int(cuts[1])


def unix_seconds(index):
    """Seconds since 1970-01-01 UTC of a DatetimeIndex, as float64."""
    return ((index - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(1, "s")).to_numpy("float64")


@keras.saving.register_keras_serializable(package="nlpapps")
class Encode(keras.layers.Layer):
    """Raw readings [batch, time, features] and unix seconds [batch, time] → the model's inputs:
    each angle (degrees) as its sine and cosine, every other reading as is, then 1/0 for each
    (feature index, threshold) in `events` (is the event happening now?), then the phase of the
    time in each of `periods` ("day", "year") as sine and cosine; all standardised
    with the training period's statistics and clipped to ±CLIP. Readings must be finite (the
    serving graph carries the last valid one forward first); a non-finite time encodes as zeros."""

    def __init__(self, angles, periods, events=(), mean=None, std=None, **kwargs):
        super().__init__(autocast=False, **kwargs)  # float64 seconds must reach call() as they are
        self.angles = [bool(a) for a in angles]
        self.periods = [str(p) for p in periods]
        self.events = [[int(i), float(threshold)] for i, threshold in events]
        width = len(self.angles) + sum(self.angles) + len(self.events) + 2 * len(self.periods)
        self.mean = list(mean) if mean is not None else [0.0] * width
        self.std = list(std) if std is not None else [1.0] * width

    @property
    def width(self):
        return len(self.mean)

    def call(self, inputs):
        # A handful of whole-tensor ops rather than some per feature: a streamed step runs this
        # for every reading.
        readings, seconds = inputs
        readings = tf.cast(readings, "float32")
        seconds = tf.cast(seconds, "float64")
        angles = [i for i, angle in enumerate(self.angles) if angle]
        columns = [readings]
        if angles:
            radians = tf.gather(readings, angles, axis=-1) * (math.pi / 180)
            columns += [tf.sin(radians), tf.cos(radians)]
        if self.events:
            now = tf.gather(readings, [i for i, _ in self.events], axis=-1)
            columns.append(tf.cast(now > tf.constant([t for _, t in self.events], "float32"), "float32"))
        if self.periods:
            finite = tf.math.is_finite(seconds)[..., None]
            periods = tf.constant([PERIODS[p] for p in self.periods], "float64")
            phase = tf.math.floormod(tf.where(finite, seconds[..., None], 0.0), periods) / periods
            phase = tf.cast(phase, "float32") * (2 * math.pi)
            zero = tf.zeros_like(phase)
            columns += [tf.where(finite, tf.sin(phase), zero), tf.where(finite, tf.cos(phase), zero)]
        x = tf.gather(tf.concat(columns, -1), self._order(), axis=-1)
        x = (x - tf.constant(self.mean, "float32")) / tf.constant(self.std, "float32")
        return tf.clip_by_value(x, -CLIP, CLIP)

    def _order(self):
        """Where each output column sits in call()'s concatenation [readings, sines of the angles,
        cosines of the angles, events, sines of the periods, cosines of the periods]: each angle's
        sine and cosine in its place, then the events, then each period's sine and cosine."""
        n, a, p = len(self.angles), sum(self.angles), len(self.periods)
        order, k = [], 0
        for i, angle in enumerate(self.angles):
            order += [n + k, n + a + k] if angle else [i]
            k += angle
        order += list(range(n + 2 * a, n + 2 * a + len(self.events)))
        base = n + 2 * a + len(self.events)
        for j in range(p):
            order += [base + j, base + p + j]
        return order

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0][:-1]) + (self.width,)

    def get_config(self):
        return {
            **super().get_config(),
            "angles": self.angles,
            "periods": self.periods,
            "events": self.events,
            "mean": self.mean,
            "std": self.std,
        }


def fitted_encoder(readings, seconds, angles, periods, events=(), name="encode"):
    """An Encode layer standardised with the mean and standard deviation of `readings` (the
    training period); a constant input keeps a unit scale."""
    raw = Encode(angles, periods, events)([readings[None].astype("float32"), seconds[None]]).numpy()[0]
    std = raw.std(0)
    return Encode(angles, periods, events, raw.mean(0).tolist(), np.where(std > 1e-6, std, 1.0).tolist(), name=name)


def carry_forward(readings, last):
    """Replace each non-finite reading by the last finite one of its feature: readings [batch, time,
    features], last [batch, features] (the value before the first step). Returns (filled, new last)."""

    def step(previous, x):
        kept = tf.where(tf.math.is_finite(x), x, previous)
        return kept, kept

    time_major = tf.transpose(readings, [1, 0, 2])
    final, filled = tf.scan(lambda carry, x: step(carry[0], x), time_major, initializer=(last, last))
    return tf.transpose(filled, [1, 0, 2]), tf.cond(tf.shape(readings)[1] > 0, lambda: final[-1], lambda: last)


def departures(readings, columns, alpha, mean):
    """Readings [batch, time, features] with each feature of `columns` replaced by its departure
    from its trailing mean, an exponential average (weight `alpha` on the newest reading) of that
    feature; `mean` [batch, len(columns)] is the average before the first step, NaN where there is
    none yet (the first reading starts it). The readings must be finite. Returns (the readings so
    changed, the last mean): the mean is a stream's state, so one step at a time gives the same as
    a whole sequence."""

    def step(previous, x):
        return tf.where(tf.math.is_finite(previous), previous + alpha * (x - previous), x)

    picked = tf.transpose(tf.gather(readings, columns, axis=-1), [1, 0, 2])
    means = tf.transpose(tf.scan(step, picked, initializer=mean), [1, 0, 2])
    place = tf.constant(np.eye(readings.shape[-1], dtype="float32")[columns])  # each mean under its column
    out = readings - tf.tensordot(means, place, 1)
    return out, tf.cond(tf.shape(readings)[1] > 0, lambda: means[:, -1], lambda: mean)


def windows(readings, seconds, targets, spans, length, stride, batch_size, shuffle=False, seed=0):
    """tf.data of ((readings[length, F], seconds[length]), targets[length, ...]) windows, every
    `stride` steps, whose steps and targets all lie in one of the [start, stop) `spans` (several
    series laid end to end: no window crosses from one into the next); batched, cached, prefetched."""
    starts = np.concatenate([np.arange(start, stop - length + 1, stride) for start, stop in spans])
    if not len(starts):
        return None
    ds = tf.data.Dataset.from_tensor_slices(starts).map(_slicer(readings, seconds, targets, length)).cache()
    if shuffle:
        ds = ds.shuffle(len(starts), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _slicer(readings, seconds, targets, steps):
    """s -> ((readings, seconds), targets) of the `steps` steps from s, as tensors."""
    x = tf.constant(readings, "float32")
    t = tf.constant(seconds, "float64")
    y = {k: tf.constant(v, "float32") for k, v in targets.items()}
    return lambda s: ((x[s : s + steps], t[s : s + steps]), {k: v[s : s + steps] for k, v in y.items()})
