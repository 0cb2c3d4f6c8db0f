"""The CSV side of `nlpapps forecast`: reading rows of readings onto the model's grid, the same way
for a file (--input) and for a stream (--stream), following a stream with the exported `step`
signature, and writing one line (CSV or JSON) per forecast."""

import csv
import gzip
import json

import numpy as np
import pandas as pd
import tensorflow as tf

from nlpapps.data import series, sources
from nlpapps.errors import UserError, excerpt, listing

MISSING = ("", "NA", "NaN", "nan", "null")  # a missing reading, carried forward without a warning
TAIL_HINT = " (following a file, start at its header: tail -n +1 -f FILE)"


class Rows:
    """The rows of a CSV of readings placed on the model's grid, the same for --input and --stream.
    Time decides the steps, as the model was trained on a regular grid: readings missing between two
    rows are stepped through carried forward, and a row that cannot be placed after the previous one
    (its time unreadable, repeated, earlier, or within half an interval) is skipped. A missing or
    malformed value is carried forward. Each with a `warn(message)`."""

    def __init__(self, meta, origin, warn, overrides=None):
        columns = meta["data"]["columns"]
        self.time, self.date, self.station_column = columns["time"], columns["date"], columns["station"]
        self.station = meta["station"]
        for key, value in (overrides or {}).items():
            setattr(self, key, value)
        self.features = [f["name"] for f in meta["features"]]
        self.interval = pd.Timedelta(float(meta["interval_seconds"]), "s")
        self.origin, self.warn = origin, warn
        self.last_time = None

    def check_header(self, names):
        """Refuse a header without the time column or without one of the model's features."""
        hint = TAIL_HINT if self.origin == "stdin" else ""
        for column in filter(None, (self.time, self.date)):
            if column not in names:
                raise UserError(
                    f"{self.origin}: the header has no time column {column!r}; columns are: {listing(names)}{hint}"
                )
        missing = [f for f in self.features if f not in names]
        if missing:
            raise UserError(
                f"{self.origin}: the header has no column {missing[0]!r}, a reading the model needs "
                f"(it reads {', '.join(self.features)}); columns are: {listing(names)}"
            )

    def steps(self, number, cells):
        """The (time, reading) steps a row moves the forecast by: [] for a row skipped (the forecast
        stands), None for another station's row (no line at all)."""
        if self.station_column and cells.get(self.station_column, self.station) != self.station:
            return None
        when = self._time(cells)
        steps = 1 if when is None or self.last_time is None else round((when - self.last_time) / self.interval)
        if when is None or steps < 1:
            if cells:
                placed = (
                    "unreadable time"
                    if when is None
                    else f"time {when.isoformat()} is "
                    + ("not after" if when <= self.last_time else "within half an interval of")
                    + f" the previous reading's ({self.last_time.isoformat()})"
                )
                stands = ", the forecast stands" if self.last_time is not None else ""
                self.warn(f"line {number}: {placed}; row skipped{stands}")
            return []
        if steps > 1:
            self.warn(f"line {number}: {steps - 1} reading(s) missing before {when.isoformat()}; carried forward")
        reading = []
        for feature in self.features:
            value = sources.number(cells.get(feature))
            if value is None and cells.get(feature) not in MISSING:
                shown = excerpt(cells.get(feature, ""))
                self.warn(f"line {number}: {feature} = '{shown}' is not a reading; carried forward")
            reading.append(np.nan if value is None else value)
        gap = [(when - k * self.interval, [np.nan] * len(self.features)) for k in range(steps - 1, 0, -1)]
        self.last_time = when
        return [*gap, (when, reading)]

    def read(self, lines):
        """(line number, steps) for each row of `lines` (the first is the header); see `steps`."""
        rows = csv.reader(lines)
        names = next(rows, None)
        if names is None:
            raise UserError(f"{self.origin}: empty; expected a CSV header, then rows of readings")
        self.check_header(names)
        for number, row in enumerate(rows, start=2):
            if not row:
                continue
            if len(row) != len(names):
                self.warn(f"line {number}: {len(row)} fields where the header has {len(names)}; row skipped")
                row = []
            steps = self.steps(number, dict(zip(names, row)) if row else {})
            if steps is not None:
                yield number, steps
        if self.last_time is None:
            station = f" of station {self.station}" if self.station_column else ""
            raise UserError(f"{self.origin}: no readings{station} after the header")

    def _time(self, cells):
        text = cells.get(self.time)
        if text is None:
            return None
        if self.date:
            text = f"{cells.get(self.date, '')} {text}"
        try:
            when = pd.Timestamp(text)
        except (ValueError, TypeError, OverflowError):
            return None
        if pd.isna(when):
            return None
        return when.tz_localize("UTC") if when.tzinfo is None else when.tz_convert("UTC")


def file_lines(path):
    """The lines of a CSV file (optionally .gz) as text; bytes that are not UTF-8 become U+FFFD."""
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace", newline="") as f:
            yield from f
    except FileNotFoundError:
        raise UserError(f"{path}: not found") from None
    except (OSError, EOFError) as e:
        raise UserError(f"{path}: cannot read ({e})") from None


def read_input(path, meta, warn, overrides=None):
    """A file of readings on the model's grid, read as a stream reads it: (times, readings[steps,
    features], unix seconds); the steps with no reading are NaN, which the model carries forward."""
    placed = [step for _, steps in Rows(meta, str(path), warn, overrides).read(file_lines(path)) for step in steps]
    times = pd.DatetimeIndex([when for when, _ in placed])
    return times, np.asarray([r for _, r in placed], "float32"), series.unix_seconds(times)


class Lines:
    """One output line per forecast: CSV (`time`, each output of each target at +1 … +horizon
    steps with its unit, then `status`: new, or stands when a skipped row repeats the standing
    forecast) or a JSON object."""

    def __init__(self, meta, outputs, as_json=False):
        self.targets = meta["targets"]
        self.horizon = meta["horizon"]
        self.interval = meta.get("interval", "")
        self.as_json = as_json
        quantities = [t for t in self.targets if t.get("kind") == "quantity"]
        self.outputs = {}  # output name -> the targets along its last axis
        state = set(meta.get("state", []))
        for name in sorted(outputs, key=lambda n: (n != "forecast", n)):
            shape = outputs[name]
            if name in state:
                continue
            if len(shape) == 3 and shape[1] == self.horizon:
                chosen = next((ts for ts in (self.targets, quantities) if len(ts) == shape[2]), None)
                if chosen:
                    self.outputs[name] = chosen

    def header(self):
        if self.as_json:
            return None
        columns = [
            f"{_label(t, name)}+{h}[{t.get('unit') or '1'}]"
            for name, targets in self.outputs.items()
            for t in targets
            for h in range(1, self.horizon + 1)
        ]
        return ",".join(["time", *columns, "status"])

    def line(self, when, values, stands=False):
        """values: {output name: array[horizon, targets]} of one forecast."""
        if self.as_json:
            targets = {}
            for name, chosen in self.outputs.items():
                for k, t in enumerate(chosen):
                    entry = targets.setdefault(t["name"], {"unit": t.get("unit", "")})
                    entry[name] = [round(float(v), 4) for v in np.asarray(values[name])[:, k]]
            row = {"time": str(when), "status": "stands" if stands else "new", "step": self.interval}
            return json.dumps({**row, "targets": targets}, ensure_ascii=False)
        cells = [f"{v:.4g}" for name in self.outputs for v in np.asarray(values[name]).T.reshape(-1)]
        return ",".join([str(when), *cells, "stands" if stands else "new"])


def _label(target, output):
    return target["name"] if output == "forecast" else f"{target['name']}:{output}"


def output_shapes(signature):
    """{output name: shape} of a signature, from its structured outputs."""
    return {k: tuple(v.shape) for k, v in signature.structured_outputs.items()}


def stream(lines, signatures, rows, write):
    """Forecast after every CSV row of `lines` (the first is the header) with the `step` signature,
    one `write.line` per row (a skipped row repeats the standing forecast, marked); the stream goes
    on through bad rows, each with a warning."""
    step = signatures["step"]
    state = dict(signatures["initial_state"](batch_size=tf.constant(1)))
    standing, started = None, False
    for _, steps in rows.read(lines):
        for when, reading in steps:
            seconds = series.unix_seconds(pd.DatetimeIndex([when]))
            out = step(reading=tf.constant([reading], "float32"), time=tf.constant(seconds), **state)
            state = {k: out[k] for k in state}
            standing = (when.isoformat(), {k: out[k][0].numpy() for k in write.outputs})
        if not started and standing:
            started = True
            if write.header():
                yield write.header()
        if standing:
            yield write.line(*standing, stands=not steps)
