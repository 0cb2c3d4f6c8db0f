"""The CSV side of `nlpapps forecast`: reading a file of readings onto the model's grid, following a
stream of rows with the exported `step` signature, and writing one CSV line per forecast."""

import csv

import numpy as np
import pandas as pd
import tensorflow as tf

from nlpapps.data import series, sources
from nlpapps.errors import UserError


def _data_settings(meta):
    columns = meta["data"]["columns"]
    return {
        "time_column": columns["time"],
        "date_column": columns["date"],
        "skip_rows": 0,
        "station_column": columns["station"],
        "station": meta["station"],
    }


def header(meta):
    """The output's CSV header: the reading's time, then each target at +1 … +horizon steps."""
    return ",".join(["time", *(f"{t['name']}+{h}" for t in meta["targets"] for h in range(1, meta["horizon"] + 1))])


def line(when, forecast):
    """One CSV line: time, then forecast[horizon, targets] target by target."""
    return ",".join([str(when), *(f"{v:.4g}" for v in np.asarray(forecast).T.reshape(-1))])


def read_input(path, meta):
    """A CSV of readings with the training data's columns, on the model's grid: (times, readings,
    seconds); steps with no reading are NaN, which the model carries forward."""
    features = [f["name"] for f in meta["features"]]
    interval = pd.Timedelta(meta["interval_seconds"], "s")
    frame, _, _ = series.load(str(path), _data_settings(meta), features, interval=interval)
    return frame.index, frame[features].to_numpy("float32"), series.unix_seconds(frame.index)


def stream(lines, signatures, meta, emit, warn):
    """Forecast after every CSV row of `lines` (the first is the header), one `emit(line)` per row.
    Time decides the steps, as the model was trained on a regular grid: readings missing between two
    rows are stepped through carried forward, and a row that cannot be placed after the previous one
    (its time unreadable, repeated, earlier, or within half an interval) is skipped with the forecast
    standing. A missing or malformed value is carried forward. Each with a `warn(message)`; the stream
    goes on."""
    settings = _data_settings(meta)
    features = [f["name"] for f in meta["features"]]
    interval = pd.Timedelta(float(meta["interval_seconds"]), "s")
    rows = csv.reader(lines)
    names = next(rows, None)
    if names is None:
        return
    missing = [c for c in [settings["time_column"], settings["date_column"]] if c and c not in names]
    if missing:
        raise UserError(
            f"stdin: the first line, the header, has no time column {missing[0]!r}; columns are: {', '.join(names)}"
            f" (following a file, start at its header: tail -n +1 -f FILE)"
        )
    state = {k: v for k, v in signatures["initial_state"](batch_size=tf.constant(1)).items()}

    def advance(reading, when):
        nonlocal state
        seconds = series.unix_seconds(pd.DatetimeIndex([when]))
        out = signatures["step"](reading=tf.constant([reading], "float32"), time=tf.constant(seconds), **state)
        state = {k: out[k] for k in state}
        return out["forecast"][0].numpy()

    emit(header(meta))
    last_time, standing = None, None
    for number, row in enumerate(rows, start=2):
        if not row:
            continue
        cells = dict(zip(names, row))
        if len(row) != len(names):
            warn(f"line {number}: {len(row)} fields where the header has {len(names)}; row skipped")
            cells = {}
        station = settings["station_column"]
        if cells and station and station in cells and cells[station] != settings["station"]:
            continue  # another station's reading
        when = _time(cells, settings)
        steps = 1 if when is None or last_time is None else round((when - last_time) / interval)
        if when is None or steps < 1:
            if cells:
                placed = (
                    "unreadable time"
                    if when is None
                    else f"time {when.isoformat()} is "
                    + ("not after" if when <= last_time else "within half an interval of")
                    + f" the previous reading's ({last_time.isoformat()})"
                )
                warn(f"line {number}: {placed}; row skipped" + (", the forecast stands" if standing else ""))
            if standing:
                emit(standing)
            continue
        if steps > 1:
            warn(f"line {number}: {steps - 1} reading(s) missing before {when.isoformat()}; carried forward")
        for k in range(steps - 1, 0, -1):
            advance([np.nan] * len(features), when - k * interval)
        reading = []
        for feature in features:
            value = sources.number(cells.get(feature))
            if value is None:
                warn(f"line {number}: {feature} = {cells.get(feature, '')!r} is not a reading; carried forward")
            reading.append(np.nan if value is None else value)
        standing = line(when.isoformat(), advance(reading, when))
        last_time = when
        emit(standing)


def _time(cells, settings):
    text = cells.get(settings["time_column"])
    if text is None:
        return None
    if settings["date_column"]:
        text = f"{cells.get(settings['date_column'], '')} {text}"
    try:
        when = pd.Timestamp(text)
    except (ValueError, TypeError):
        return None
    if pd.isna(when):
        return None
    return when.tz_localize("UTC") if when.tzinfo is None else when.tz_convert("UTC")
