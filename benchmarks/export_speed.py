"""Serving speed of two text exports side by side (say, before and after a model change): texts per
second of each one's `serving_default` at batch 1 and 256, strings in, timed interleaved.

    python benchmarks/export_speed.py saved_models/sentiment/1 saved_models/sentiment/2 [--rounds 3]

The texts are the shipped sentiment snippets' (or --data FILE's `text` column). Each export first
answers every batch once (XLA compiles one program per shape), then each round times both, in
alternating order; the median of the rounds is printed with the ratio of the second to the first.
"""

import argparse
import csv
import gzip
import statistics
import time

import tensorflow as tf

from nlpapps.data import sources


def texts_of(path):
    with gzip.open(path, "rt", encoding="utf-8") if str(path).endswith(".gz") else open(path) as f:
        return [row["text"] for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]


def rate(serve, chunks):
    start = time.perf_counter()
    for chunk in chunks:
        serve(text=chunk)
    return sum(int(c.shape[0]) for c in chunks) / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("exports", nargs=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data", default=sources.SHIPPED / "sentiment_snippets.tsv.gz")
    args = parser.parse_args()
    texts = texts_of(args.data)[:2048]
    serves = [tf.saved_model.load(p).signatures["serving_default"] for p in args.exports]
    for batch, count in ((1, 300), (256, 8)):
        chunks = [tf.constant(texts[i * batch : (i + 1) * batch]) for i in range(count)]
        for serve in serves:
            rate(serve, chunks)  # warm-up: every shape compiled
        rates = [[], []]
        for r in range(args.rounds):
            for i in (0, 1) if r % 2 == 0 else (1, 0):
                rates[i].append(rate(serves[i], chunks))
        a, b = (statistics.median(x) for x in rates)
        first, second = args.exports
        print(f"batch {batch}: {a:,.0f} texts/s ({first}), {b:,.0f} texts/s ({second}); ratio {b / a:.2f}")


if __name__ == "__main__":
    main()
