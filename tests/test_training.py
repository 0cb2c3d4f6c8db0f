"""Runs are trustworthy: a run owns its folder, a finished run leaves no backup, and a run killed
mid-epoch (SIGKILL, a real subprocess) then run again ends exactly as an unbroken run."""

import csv
import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest
from conftest import cli_env, nlpapps_exe, run_nlpapps, shipped_rows

# A tiny model on 400 real snippets, 40 steps an epoch: seconds per run, long enough to kill mid-epoch.
TINY = [
    "--set",
    "data.domain=",
    "--epochs",
    "4",
    "--units",
    "8",
    "--set",
    "text.vocab_size=500",
    "--set",
    "model.embedding_dim=8",
    "--batch-size",
    "8",
    "--set",
    "train.patience=10",
]


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("resume") / "small.csv"
    rows = shipped_rows()[::45][:400]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "score"])
        writer.writerows([r["text"], r["score"]] for r in rows)
    return path


def _args(data, output):
    return ["run", "sentiment", "--data", str(data), *TINY, "--output", str(output)]


@pytest.fixture(scope="module")
def unbroken(small_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("unbroken")
    proc = run_nlpapps(_args(small_csv, out))
    assert proc.returncode == 0, proc.stderr.decode()
    return out / "sentiment" / "1", proc


def _kill_in_epoch(args, epoch, output):
    """Start the run, SIGKILL it once it prints the start of `epoch`; returns what it printed."""
    env = {**cli_env(), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([nlpapps_exe(), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line.decode())
            if line.startswith(f"Epoch {epoch}/".encode()):
                time.sleep(0.2)  # inside the epoch: its batches are being trained on
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.wait(timeout=120)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    assert not (output / "sentiment" / "1").exists(), "the run finished before it could be killed"
    return "".join(seen)


def _weights(path):
    from nlpapps import export

    return export.load_keras(path).get_weights()


def test_killed_run_resumes_exactly(small_csv, unbroken, tmp_path):
    export_a, _ = unbroken
    out = tmp_path / "out"
    _kill_in_epoch(_args(small_csv, out), 3, out)
    backup = next(out.glob("sentiment/runs/*/backup.npz"))
    assert backup.is_file()

    proc = run_nlpapps(_args(small_csv, out))
    assert proc.returncode == 0, proc.stderr.decode()
    stdout = proc.stdout.decode()
    assert "after epoch 2" in stdout and "Epoch 3/4" in stdout and "Epoch 1/4" not in stdout
    export_b = out / "sentiment" / "1"
    a, b = (json.loads((p / "metadata.json").read_text()) for p in (export_a, export_b))
    # Same history (every epoch, not only those after the restart), same metrics, same weights.
    assert list(a["history"]) == list(b["history"])
    for key in a["history"]:
        np.testing.assert_allclose(a["history"][key], b["history"][key], atol=1e-4, err_msg=key)
        assert len(b["history"][key]) == 4
    for row_a, row_b in zip(a["metrics"]["test"], b["metrics"]["test"]):
        for key, value in row_a.items():
            if isinstance(value, float):
                assert row_b[key] == pytest.approx(value, abs=1e-4), key
    for wa, wb in zip(_weights(export_a), _weights(export_b)):
        np.testing.assert_allclose(wa, wb, atol=1e-4)
    assert not backup.exists(), "a finished run removes its backup"


def test_finished_run_leaves_no_backup(unbroken):
    export_a, _ = unbroken
    runs = list((export_a.parent / "runs").glob("*"))
    assert runs and not list(export_a.parent.glob("runs/*/backup*"))


def test_second_run_of_a_recipe_refuses_while_the_first_trains(small_csv, tmp_path):
    """The lock is held by this test process, as a running `nlpapps run` holds it."""
    from nlpapps import recipes, training

    out = tmp_path / "out"
    recipe = recipes.load("sentiment", ["data.source=" + json.dumps(str(small_csv)), *_overrides()])
    workdir = training.run_dir(out, recipe)
    with training.owned(workdir):
        proc = run_nlpapps(_args(small_csv, out))
    lines = proc.stderr.decode().strip().splitlines()
    assert proc.returncode == 2, proc.stderr.decode()
    assert len(lines) == 1 and f"pid {os.getpid()}" in lines[0] and "another run" in lines[0], lines
    assert not (out / "sentiment" / "1").exists()
    # (A killed run's lock goes with its process: test_killed_run_resumes_exactly reruns at once.)


def _overrides():
    """TINY as recipe overrides (what the CLI turns the flags into)."""
    flags = {"--epochs": "train.epochs", "--units": "model.units", "--batch-size": "train.batch_size"}
    out, it = [], iter(TINY)
    for flag in it:
        value = next(it)
        out.append(value if flag == "--set" else f"{flags[flag]}={value}")
    return out


@pytest.mark.filterwarnings("ignore:Your input ran out of data")  # Keras finds a dataset's end by running out
def test_evaluate_gives_what_keras_evaluate_gives():
    """training.evaluate (the fit loop's own test step, which works under every strategy) reports the
    compiled loss and metrics as Keras' evaluate does, on batches of varying length."""
    import keras
    import tensorflow as tf

    from nlpapps import training

    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [keras.layers.Embedding(50, 4, mask_zero=True), keras.layers.GRU(3), keras.layers.Dense(2)]
    )
    model.compile(
        "adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["sparse_categorical_accuracy"]
    )
    rng = np.random.default_rng(0)
    batches = [(rng.integers(1, 50, (n, length)), rng.integers(0, 2, n)) for n, length in ((8, 5), (8, 9), (3, 2))]
    data = tf.data.Dataset.from_generator(
        lambda: iter(batches),
        output_signature=(tf.TensorSpec([None, None], tf.int64), tf.TensorSpec([None], tf.int64)),
    )
    expected = model.evaluate(data, verbose=0, return_dict=True)
    got = training.evaluate(model, data)
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-5), key


def test_fused_adam_steps_as_keras_adam():
    """training.Adam (TensorFlow's fused kernel) moves every weight as Keras' Adam does, over steps
    with an embedding's sparse gradient, gradient clipping and a decaying learning rate, compiled.
    (Each id once a batch: where an id repeats, Keras squares each occurrence's gradient apart for
    the second moment, where Adam, the fused kernel and PyTorch square their sum.)"""
    import keras
    import tensorflow as tf

    from nlpapps import training

    rng = np.random.default_rng(5)
    ids, y = tf.constant(rng.permutation(np.arange(1, 40))[:35].reshape(5, 7)), tf.constant(rng.integers(0, 3, 5))
    moved = []
    for optimizer in (keras.optimizers.Adam, training.Adam):
        keras.utils.set_random_seed(4)
        model = keras.Sequential(
            [keras.layers.Embedding(40, 6, mask_zero=True), keras.layers.GRU(5), keras.layers.Dense(3)]
        )
        model.build((None, 7))
        rate = keras.optimizers.schedules.CosineDecay(0.05, 10)
        model.compile(optimizer(rate, clipnorm=1.0), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        start = [w.numpy() for w in model.trainable_weights]
        for _ in range(6):
            model.train_on_batch(ids, y)
        moved.append([w.numpy() - s for w, s in zip(model.trainable_weights, start)])
    for keras_adam, fused in zip(*moved):
        assert np.abs(keras_adam).max() > 1e-3  # every weight moved
        np.testing.assert_allclose(fused, keras_adam, rtol=1e-4, atol=1e-6)
