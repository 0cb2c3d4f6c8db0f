"""Generation end to end: a tiny conditioned model trained on real snippets (a CSV of shipped rows,
read with --set alone) and judged for control by the session's sentiment model; its export
sampled in a TensorFlow-only process and compared with the CLI; the names recipe; sampling in
decoding; bad inputs."""

import csv
import json

import numpy as np
import pytest
import tensorflow as tf
from conftest import TF_ONLY, invoke, last_json_line, run_nlpapps, shipped_rows

from nlpapps import decoding, recipes
from nlpapps.data import text
from nlpapps.tasks.generate import data

TINY = [
    "--epochs",
    "1",
    "--units",
    "32",
    "--set",
    "model.embedding_dim=8",
    "--set",
    "model.condition_dim=8",
    "--set",
    "evaluate.per_value=10",
    "--set",
    "evaluate.control_texts=8",
    "--set",
    "evaluate.ngram_order=3",
]

SAMPLE = (
    TF_ONLY
    + r"""
import tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
conditions = json.loads(sys.argv[2])
inputs = {k: tf.constant([v], tf.float32 if isinstance(v, float) else tf.string) for k, v in conditions.items()}
common = dict(temperature=tf.constant(1.0), seed=tf.constant(5, tf.int64), count=tf.constant(4))
full = model.signatures["sample"](**inputs, **common, top_k=tf.constant(0), top_p=tf.constant(1.0),
                                  max_length=tf.constant(200))
again = model.signatures["sample"](**inputs, **common, top_k=tf.constant(0), top_p=tf.constant(1.0),
                                   max_length=tf.constant(200))
short = model.signatures["sample"](**inputs, **common, top_k=tf.constant(0), top_p=tf.constant(1.0),
                                   max_length=tf.constant(60))
default = model.signatures["serving_default"](**inputs, **common)
other = model.signatures["serving_default"](**inputs, temperature=tf.constant(1.0), seed=tf.constant(6, tf.int64),
                                            count=tf.constant(4))
texts = lambda out: [t.decode("utf-8") for t in out["text"].numpy()]
print(json.dumps({"full": texts(full), "again": texts(again), "default": texts(default), "other": texts(other),
                  "short": texts(short), "score": short["score"].numpy().tolist()}))
"""
)


@pytest.fixture(scope="module")
def snippets_csv(tmp_path_factory):
    """Real rows of the shipped snippets in a CSV whose columns are named otherwise: review, kind, stars."""
    path = tmp_path_factory.mktemp("snippets") / "reviews.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["review", "kind", "stars"])
        for row in shipped_rows()[::40]:
            writer.writerow([row["text"], row["domain"], row["score"]])
    return path


@pytest.fixture(scope="module")
def generated(snippets_csv, sentiment_export, tmp_path_factory):
    """`nlpapps run generate` on the CSV, control judged by the session's sentiment model."""
    root = tmp_path_factory.mktemp("generate_models")
    args = ["run", "generate", *TINY, "--data", snippets_csv, "--set", "data.text_column=review"]
    args += ["--set", 'data.conditions=["kind", "stars"]', "--set", "evaluate.control=stars"]
    args += ["--set", f"evaluate.sentiment_model={sentiment_export}", "--output", root]
    result = invoke(args)
    assert result.exit_code == 0, f"training failed:\n{result.output}\n{result.exception!r}"
    return root / "generate" / "1", result.output


def test_run_reports_baselines_diversity_control_and_samples(generated):
    path, output = generated
    for words in ("unconditional, same size", "3-gram (nltk, Witten-Bell)", "distinct_2", "Spearman", "samples:"):
        assert words in output
    meta = json.loads((path / "metadata.json").read_text())
    assert meta["conditions"]["kind"] == {"kind": "category", "values": ["movie", "product", "tweet"]}
    low, high = meta["conditions"]["stars"]["range"]
    assert meta["conditions"]["stars"]["kind"] == "number" and -4 <= low < 0 < high <= 4
    perplexities = [row["perplexity"] for row in meta["metrics"]["perplexity"]]
    assert len(perplexities) == 3 and all(1 < p < 200 for p in perplexities)
    control = meta["metrics"]["control"]
    assert set(control["mean_judged"]) == {"-3.0", "-1.5", "0.0", "1.5", "3.0"} and -1 <= control["spearman"] <= 1
    assert [row["group"] for row in meta["metrics"]["generated"]] == ["movie", "product", "tweet", "all"]
    assert meta["metrics"]["generated"][-1]["texts"] == 30
    assert sorted(meta["signatures"]) == ["sample", "serving_default"]


def test_export_samples_in_plain_tensorflow_what_the_cli_writes(generated, tmp_path):
    path, _ = generated
    conditions = {"kind": "tweet", "stars": -2.5}
    served = last_json_line(SAMPLE, path, json.dumps(conditions))
    assert served["full"] == served["again"], "the same seed must give the same texts"
    assert served["default"] == served["full"]  # the recipe's top-k, top-p and length are the defaults asked here
    assert served["other"] != served["full"]
    # The same draws up to the cap: a shorter cap cuts the same texts.
    assert served["short"] == [t[:60] for t in served["full"]]
    assert len(served["full"]) == 4 and all(len(t) <= 200 for t in served["full"])
    assert all(s < 0 for s in served["score"])
    cli = run_nlpapps(
        ["generate", "--model", path, "--kind", "tweet", "--stars", "-2.5", "-n", "4", "--seed", "5"]
        + ["--max-length", "60", "--json"]
    )
    assert cli.returncode == 0, cli.stderr.decode()
    rows = [json.loads(line) for line in cli.stdout.decode().splitlines()]
    assert [r["text"] for r in rows] == served["short"]
    assert rows[0]["conditions"] == conditions and rows[0]["seed"] == 5
    assert [r["score"] for r in rows] == pytest.approx(served["score"], abs=1e-3)


@pytest.mark.parametrize(
    "args, words",
    [
        (["--kind", "film", "--stars", "1"], "--kind 'film': not one of movie, product, tweet"),
        (["--kind", "movie", "--stars", "9"], "--stars 9: outside the range the model was trained on"),
        (["--kind", "movie"], "missing --stars"),
        (["--kind", "movie", "--stars", "1", "-n", "0"], "'-n' / '--count'"),
        (["--condition", "movie", "--condition", "1", "--colour", "red"], "this model's conditions: --kind, --stars"),
        (["--kind", "movie", "--stars", "1", "--temperature", "0"], "--temperature"),
    ],
)
def test_bad_generate_input_is_one_line_and_exit_2(generated, args, words):
    path, _ = generated
    before = sorted(p.name for p in path.parent.iterdir())
    result = run_nlpapps(["generate", "--model", path, *args])
    stderr = result.stderr.decode()
    assert result.returncode == 2 and words in stderr, stderr
    assert stderr.count("\n") == 1 and "Traceback" not in stderr and not result.stdout
    assert sorted(p.name for p in path.parent.iterdir()) == before


@pytest.mark.parametrize(
    "override, words",
    [
        ("sample.top_p=0", "sample.top_p"),
        ('data.conditions=["seed"]', "cannot name a condition"),
        ("evaluate.control=domain", "holds categories"),
    ],
)
def test_bad_recipe_settings_refused_before_training(override, words, tmp_path):
    result = invoke(["run", "generate", "--set", override, "--output", tmp_path])
    assert result.exit_code == 2 and words in result.stderr, result.output
    assert result.stderr.count("\n") == 1 and not (tmp_path / "generate").exists()


def test_names_recipe_writes_names_for_a_locale(tmp_path):
    args = ["run", "tasks/names.toml", "--epochs", "1", "--units", "16", "--set", "train.steps_per_epoch=30"]
    args += ["--set", "evaluate.per_value=5", "--set", "evaluate.unconditional=false", "--output", tmp_path]
    args += ["--set", "evaluate.control=score"]  # the names have no score: control is skipped, not refused
    result = invoke(args)
    assert result.exit_code == 0, f"training failed:\n{result.output}\n{result.exception!r}"
    assert "control skipped: evaluate.control = 'score' is not one of data.conditions ['locale']" in result.output
    assert "fr_FR" in result.output
    out = run_nlpapps(["generate", "names", "--condition", "fr_FR", "-n", "10", "--models", tmp_path, "--seed", "1"])
    assert out.returncode == 0, out.stderr.decode()
    names = out.stdout.decode().splitlines()  # a model of 30 steps may end a name at once: an empty line
    assert len(names) == 10 and any(names) and all(len(n) <= 30 for n in names)


def _toy_step(logits):
    """A decoder whose next-token logits depend on the previous token alone."""
    table = tf.constant(logits, tf.float32)

    def step(tokens, states, context):
        return tf.gather(table, tokens), states

    return step


TOY = np.log(
    [
        [0.01, 0.01, 0.01, 0.01, 0.96],  # after padding (never reached)
        [0.05, 0.05, 0.5, 0.3, 0.1],  # after 1: 2 most likely
        [0.05, 0.45, 0.1, 0.3, 0.1],  # after 2: 1 most likely
        [0.05, 0.3, 0.3, 0.05, 0.3],
        [0.05, 0.5, 0.3, 0.1, 0.05],  # after the start (4)
    ]
)


def test_sample_top_k_1_is_greedy_and_a_seed_repeats():
    step, caps = _toy_step(TOY), tf.fill([6], 8)
    common = dict(start_id=4, end_id=3, max_lengths=caps, banned=(0, 4))
    greedy, greedy_scores = decoding.greedy(step, [tf.zeros([6, 1])], None, length_penalty=0.0, **common)
    top1, top1_scores = decoding.sample(step, [tf.zeros([6, 1])], None, seed=3, top_k=1, **common)
    np.testing.assert_array_equal(top1.numpy(), greedy.numpy())
    np.testing.assert_allclose(top1_scores.numpy(), greedy_scores.numpy(), rtol=1e-5)
    tiny_p, _ = decoding.sample(step, [tf.zeros([6, 1])], None, seed=3, top_p=0.01, **common)
    np.testing.assert_array_equal(tiny_p.numpy(), greedy.numpy())
    first, _ = decoding.sample(step, [tf.zeros([6, 1])], None, seed=7, **common)
    again, _ = decoding.sample(step, [tf.zeros([6, 1])], None, seed=7, **common)
    np.testing.assert_array_equal(first.numpy(), again.numpy())
    assert len({tuple(row) for row in first.numpy().tolist()}) > 1, "rows must draw apart"


def test_sample_top_k_2_draws_only_the_two_most_likely():
    step = _toy_step(TOY)
    tokens, _ = decoding.sample(
        step, [tf.zeros([400, 1])], None, start_id=4, end_id=3, max_lengths=tf.fill([400], 1), seed=1, top_k=2
    )
    # After the start, 1 (0.5) and 2 (0.3) are the two most likely; at the cap only the end remains.
    firsts = tokens.numpy()[:, 0]
    assert set(firsts.tolist()) <= {3}
    tokens, _ = decoding.sample(
        step, [tf.zeros([400, 1])], None, start_id=4, end_id=3, max_lengths=tf.fill([400], 5), seed=1, top_k=2
    )
    firsts = tokens.numpy()[:, 0]
    assert set(firsts.tolist()) == {1, 2} and 0.5 < (firsts == 1).mean() < 0.75


def test_training_batches_are_full_so_rare_lengths_do_not_end_each_epoch_with_a_tiny_batch():
    """The shipped snippets hold three product texts of one character ("!"): bucketed by length,
    they end every pass as a batch of their own unless partial batches are left out of training."""
    corpus = data.load(recipes.load("generate"), lambda *_: None)
    longest = max(len(t) for t in corpus.texts("train")) + 1
    common = dict(batch_size=64, shuffle=corpus.size("train"), seed=13, max_length=longest, epoch=0)
    every = [int(y.shape[0]) for _, y in text.batches(data.examples(corpus, "train"), **common)]
    full = [int(y.shape[0]) for _, y in text.batches(data.examples(corpus, "train"), full_only=True, **common)]
    assert min(every) < 8 and set(full) == {64}
    assert sum(every) == corpus.size("train") and sum(full) > 0.9 * corpus.size("train")
