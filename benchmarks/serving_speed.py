"""Serving speed of the text classifiers' exports: the plain graph (vectorizer → model, every op of
the recurrent loop run by the executor) against the export the apps write (the model compiled by
XLA on length-bucketed chunks), same model and weights, both as SavedModels, timed interleaved.

    python benchmarks/serving_speed.py [--tasks sentiment classify] [--rounds 3]

Each task's default recipe: its data, vectorizer and model architecture (untrained weights: the
work per text is the same). Prints texts per second of `serving_default` at batch 1 and 256 (strings
in, the test split's texts in order), the median over rounds, the warm-up (first calls until every
shape the timed calls need is compiled) and the largest difference between the two exports' outputs.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from nlpapps import evaluation, export, recipes
from nlpapps.data import stream, text
from nlpapps.tasks import classify, sentiment
from nlpapps.tasks.text import data as text_data
from nlpapps.tasks.text import serving
from nlpapps.tasks.text.model import words_of

SPEC = [tf.TensorSpec([None], tf.string, name="text")]


def built(name, log):
    """(recipe, model, vectorizer, classes, test texts) of a task's default recipe."""
    recipe = recipes.load(name)
    data = text_data.prepare(recipe, log)
    vocab, m, t = data.vectorizer.vocabulary_size(), recipe["model"], recipe["train"]
    if name == "sentiment":
        classes = ["negative", "positive"]
        prior = sentiment.lexicon.valences if m["lexicon"] == "vader" else None
        model = sentiment.build(vocab, classes, True, m, t, words_of(data.vectorizer, m, log, prior))
    else:
        classes = sorted(data.labels("train"))
        model = classify.build(vocab, len(classes), m, t["learning_rate"], words_of(data.vectorizer, m, log))
    model(data.vectorizer(tf.constant(["a text"])))  # builds what training would have built
    names = data.source.names
    texts = [t for b in data.source.batches(stream.SPLITS.index("test")) for t in b[names.index("text")]]
    return recipe, model, data.vectorizer, classes, [t.decode() if isinstance(t, bytes) else str(t) for t in texts]


def exports(recipe, model, vectorizer, classes, root):
    """{"graph": path, "compiled": path}: the same model served both ways."""
    max_tokens = recipe["text"]["max_tokens"]
    cut = text.ServingIds(max_tokens)

    def graph(text_in):
        return model(cut(vectorizer(text_in)), training=False)

    compiled = serving.serving(model, vectorizer, classes, lambda result: {}, max_tokens)
    return {
        name: export.save(
            root / name,
            recipe,
            endpoints={"serving_default": (fn, SPEC)},
            track=[model, vectorizer],
            keras_model=model,
            metadata={},
        )
        for name, fn in (("graph", graph), ("compiled", compiled))
    }


def outputs_of(result):
    """The class probabilities: the compiled export's `probabilities`, the plain graph's first head."""
    return result["probabilities"] if "probabilities" in result else result["polarity"]


def throughput(serve, chunks):
    start = time.perf_counter()
    for chunk in chunks:
        serve(text=chunk)
    return sum(int(c.shape[0]) for c in chunks) / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["sentiment", "classify"])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for name in args.tasks:
        recipe, model, vectorizer, classes, texts = built(name, print)
        with tempfile.TemporaryDirectory() as root:
            paths = exports(recipe, model, vectorizer, classes, Path(root))
            served = {k: tf.saved_model.load(str(p)).signatures["serving_default"] for k, p in paths.items()}
            cases = {
                1: [tf.constant(texts[i : i + 1]) for i in range(min(300, len(texts)))],
                256: [tf.constant(texts[i : i + 256]) for i in range(0, len(texts) - 255, 256)],
            }
            warm, diff = {}, 0.0
            for k, serve in served.items():  # every chunk once: tracing, and XLA compiling each shape met
                start = time.perf_counter()
                for chunks in cases.values():
                    for chunk in chunks:
                        serve(text=chunk)
                warm[k] = time.perf_counter() - start
            for chunk in cases[1][:50] + cases[256]:
                a, b = (outputs_of(served[k](text=chunk)).numpy() for k in ("graph", "compiled"))
                diff = max(diff, float(np.abs(a - b).max()))
            speed = {(k, batch): [] for k in served for batch in cases}
            for _ in range(args.rounds):
                for batch, chunks in cases.items():
                    for k, serve in served.items():
                        speed[k, batch].append(throughput(serve, chunks))
            for batch in cases:
                graph, fast = (statistics.median(speed[k, batch]) for k in ("graph", "compiled"))
                rows.append(
                    {
                        "task": name,
                        "batch": batch,
                        "graph_texts_per_s": graph,
                        "compiled_texts_per_s": fast,
                        "speed_up": fast / graph,
                        "warm_up_s": warm["compiled"] if batch == 1 else "",
                        "graph_warm_up_s": warm["graph"] if batch == 1 else "",
                        "max_abs_diff": f"{diff:.1e}" if batch == 1 else "",
                    }
                )
    print(f"\nserving_default, strings in, median of {args.rounds} interleaved rounds")
    print(evaluation.table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
