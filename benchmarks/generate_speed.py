"""Sampling speed of an exported generate model: texts per second of its serving_default at batch
64 (64 rows of conditions, one text each) and batch 1, with the recipe's sampling settings, and
whether the same seed gives the same texts. Uses only the SavedModel, as a server would.

    python benchmarks/generate_speed.py [--model saved_models/generate/N] [--seconds 20]

Run it on an otherwise idle machine: the figures are wall-clock.
"""

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from nlpapps import evaluation, export


def conditions(meta, rows, seed=0):
    """`rows` rows of conditions: categories in turn, numbers spread over their trained range."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, spec in meta["conditions"].items():
        if spec["kind"] == "category":
            out[name] = tf.constant([spec["values"][i % len(spec["values"])] for i in range(rows)])
        else:
            out[name] = tf.constant(rng.uniform(*spec["range"], rows), tf.float32)
    return out


def rate(serve, meta, batch, seconds):
    """(texts per second over at least `seconds` after a warm-up call, mean characters per text)."""
    inputs = conditions(meta, batch)

    def call(seed):
        args = dict(temperature=tf.constant(1.0), seed=tf.constant(seed, tf.int64), count=tf.constant(1))
        return serve(**inputs, **args)["text"].numpy()

    call(0)
    done, chars, start, seed = 0, 0, time.perf_counter(), 1
    while time.perf_counter() - start < seconds:
        texts = call(seed)
        done, chars, seed = done + len(texts), chars + sum(len(t) for t in texts), seed + 1
    return done / (time.perf_counter() - start), chars / done


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="an export folder (default: the newest saved_models/generate)")
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    path = Path(args.model) if args.model else export.latest("saved_models", "generate")
    meta = export.metadata(path, "generate")
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    rows = []
    for batch in (64, 1):
        texts_per_second, length = rate(serve, meta, batch, args.seconds)
        rows.append({"batch": batch, "texts/s": texts_per_second, "characters/text": length})
    inputs = conditions(meta, 64)
    same = [
        serve(**inputs, temperature=tf.constant(1.0), seed=tf.constant(7, tf.int64), count=tf.constant(1))["text"]
        .numpy()
        .tolist()
        for _ in range(2)
    ]
    load = os.getloadavg()[0]
    print(f"{path}: sampling at the recipe's settings; load average {load:.1f} on {os.cpu_count()} cores")
    print(evaluation.table(rows, list(rows[0])))
    print(json.dumps({"same_seed_same_texts": same[0] == same[1]}))


if __name__ == "__main__":
    main()
