"""Streaming forecast latency: the exported `step` signature at batch 1 (one new reading, the state
fed back), against the naive way of recomputing `forecast` over the last 168 readings at every new one.

    python benchmarks/forecast_speed.py [--model saved_models/forecast/N] [--readings 2000] [--window 168]
        [--threads N]

Prints p50 / p99 / mean milliseconds per new reading for each way, the ratio of their medians and the
machine's load average (other work on the cores shows in the tail). Loads the export with TensorFlow
alone, as a server would.
"""

import argparse
import os
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from nlpapps import evaluation, export
from nlpapps.data import series


def readings(meta, count):
    """The shipped EWR readings the model was trained on, `count` of them, with their times."""
    d = {"time_column": "time_hour", "date_column": "", "skip_rows": 0, "station_column": "origin", "station": "EWR"}
    features = [f["name"] for f in meta["features"]]
    frame, _, _ = series.load("shipped:nyc_weather_2013", d, features)
    frame = frame.iloc[:count]
    return frame[features].to_numpy("float32"), series.unix_seconds(frame.index)


def timed(calls):
    """Milliseconds of each call, after two warm-up calls (tracing, first allocations)."""
    for call in calls[:2]:
        call()
    out = []
    for call in calls[2:]:
        start = time.perf_counter()
        call()
        out.append((time.perf_counter() - start) * 1000)
    return np.array(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="an export folder (default: the newest saved_models/forecast)")
    parser.add_argument("--readings", type=int, default=2000, help="new readings streamed per way")
    parser.add_argument("--window", type=int, default=168, help="readings the naive way recomputes over")
    parser.add_argument(
        "--threads", type=int, default=0, help="TensorFlow intra- and inter-op threads (0: its default)"
    )
    args = parser.parse_args()
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    load_before = os.getloadavg()[0]
    path = Path(args.model) if args.model else export.latest("saved_models", "forecast")
    meta = export.metadata(path, "forecast")
    m = tf.saved_model.load(str(path))
    step, forecast = m.signatures["step"], m.signatures["forecast"]
    x, t = readings(meta, args.readings + args.window + 2)

    state = m.signatures["initial_state"](batch_size=tf.constant(1))

    def stepper(i):
        def call():
            nonlocal state
            out = step(reading=tf.constant(x[i : i + 1]), time=tf.constant(t[i : i + 1]), **state)
            state = {k: out[k] for k in state}
            return out["forecast"]

        return call

    def recompute(i):
        def call():  # the last `window` readings up to i, the whole sequence again
            return forecast(
                readings=tf.constant(x[None, i - args.window + 1 : i + 1]),
                time=tf.constant(t[None, i - args.window + 1 : i + 1]),
            )["forecast"]

        return call

    n = args.readings + 2
    rows = []
    for name, make in (("step (state fed back)", stepper), (f"forecast over {args.window} readings", recompute)):
        ms = timed([make(i) for i in range(args.window, args.window + n)])
        rows.append(
            {
                "way": name,
                "p50_ms": float(np.percentile(ms, 50)),
                "p99_ms": float(np.percentile(ms, 99)),
                "mean_ms": float(ms.mean()),
                "calls": len(ms),
            }
        )
    threads = tf.config.threading.get_inter_op_parallelism_threads() or "default"
    print(
        f"{path}: {meta['recipe']['model.cell']} {meta['recipe']['model.units']} units x "
        f"{meta['recipe']['model.depth']}, {meta['recipe'].get('model.ensemble', 1)} member(s), batch 1, "
        f"{threads} threads; {os.cpu_count()} cores, load average "
        f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after"
    )
    print(evaluation.table(rows, list(rows[0])))
    print(f"step is {rows[1]['p50_ms'] / rows[0]['p50_ms']:.1f}x faster per reading (p50)")


if __name__ == "__main__":
    main()
