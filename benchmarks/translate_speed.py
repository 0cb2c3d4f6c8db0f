"""Translation speed of an exported model: sentences per second of its signatures, greedy
(translate_greedy) and beam search of width 4 (translate_beam), at batch 1 and batch 64, on the
English sources of the shipped test split (the recipe's seed and length limit). Uses only the
SavedModel, as a server would.

    python benchmarks/translate_speed.py [--model saved_models/translate/N] [--seconds 20]

Run it on an otherwise idle machine: the figures are wall-clock.
"""

import argparse
import json
import time
from pathlib import Path

import tensorflow as tf

from nlpapps import evaluation, export
from nlpapps.data import stream


def test_sources(meta, limit):
    d = {k.split(".", 1)[1]: v for k, v in meta["recipe"].items() if k.startswith("data.")}
    source = stream.Source(
        d["source"],
        {"source": d["source_column"], "target": d["target_column"]},
        texts=("source", "target"),
        max_words={"source": d["max_source_words"], "target": d["max_target_words"]},
        fractions=tuple(d["split"]),
        seed=d["seed"],
    )
    texts = [s for columns in source.batches(stream.SPLITS.index("test")) for s in columns[0]]
    return (texts * (limit // max(len(texts), 1) + 1))[:limit]  # a small test split is repeated


def rate(call, texts, batch, seconds):
    """Sentences per second over at least `seconds` (and at least one pass), after a warm-up call."""
    batches = [tf.constant(texts[i : i + batch]) for i in range(0, len(texts) - batch + 1, batch)]
    call(batches[0])
    done, start = 0, time.perf_counter()
    while True:
        for b in batches:
            call(b)
            done += int(b.shape[0])
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="an export folder; default: the newest saved_models/translate")
    parser.add_argument("--seconds", type=float, default=20.0, help="time spent on each measurement")
    args = parser.parse_args()
    path = Path(args.model) if args.model else export.latest("saved_models", "translate")
    meta = export.metadata(path, "translate")
    texts = test_sources(meta, 640)
    model = tf.saved_model.load(str(path))
    greedy = model.signatures["translate_greedy"]
    beam = model.signatures["translate_beam"]
    calls = {"greedy": lambda b: greedy(text=b), "beam 4": lambda b: beam(text=b, beam_width=tf.constant(4))}
    rows = []
    for name, call in calls.items():
        for batch in (1, 64):
            rows.append({"decoding": name, "batch": batch, "sentences_per_s": rate(call, texts, batch, args.seconds)})
    words = sum(len(t.split()) for t in texts) / len(texts)
    print(
        f"{path}: {len(texts)} test sentences of {words:.1f} words on average; "
        f"{tf.config.threading.get_intra_op_parallelism_threads() or 'all'} intra-op threads"
    )
    print(evaluation.table(rows, ["decoding", "batch", "sentences_per_s"]))
    print(json.dumps({f"{r['decoding']} @ {r['batch']}": round(r["sentences_per_s"], 1) for r in rows}))


if __name__ == "__main__":
    main()
