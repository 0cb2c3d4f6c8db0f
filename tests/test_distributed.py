"""Training on several devices and machines: two worker processes on this machine train one model
together (TF_CONFIG, MultiWorkerMirroredStrategy) and end with the same weights and one export;
`mirrored` trains over the CPU split into two logical devices; a cluster that cannot form, and a
strategy that does not exist, end with one line and exit code 2."""

import csv
import json
import re
import socket
import subprocess

import pytest
from conftest import cli_env, invoke, nlpapps_exe, run_nlpapps, shipped_rows
from test_cli import assert_one_line_error

# A tiny model on 240 real snippets: two epochs of a few steps each.
TINY = [
    "--set",
    "data.domain=",
    "--epochs",
    "2",
    "--units",
    "8",
    "--set",
    "text.vocab_size=400",
    "--set",
    "model.embedding_dim=8",
    "--batch-size",
    "16",
    "--set",
    "train.patience=5",
]


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("distributed") / "small.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "score"])
        writer.writerows([r["text"], r["score"]] for r in shipped_rows()[::70][:240])
    return path


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def tf_config(addresses, index):
    return json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}})


@pytest.fixture(scope="module")
def two_workers(small_csv, tmp_path_factory):
    """Two `nlpapps run --strategy multi-worker` processes forming one cluster on 127.0.0.1, both
    given the same --output; returns (output folder, [(return code, stdout, stderr)] per worker)."""
    out = tmp_path_factory.mktemp("two_workers")
    addresses = [f"127.0.0.1:{p}" for p in free_ports(2)]
    args = ["run", "sentiment", "--data", str(small_csv), *TINY, "--strategy", "multi-worker", "--output", str(out)]
    folder = tmp_path_factory.mktemp("worker_logs")
    logs = [(folder / f"worker{i}.out", folder / f"worker{i}.err") for i in range(2)]
    workers = []
    for i, (stdout, stderr) in enumerate(logs):  # files, not pipes: a full pipe would stall its worker
        with open(stdout, "wb") as o, open(stderr, "wb") as e:
            env = {**cli_env(), "TF_CONFIG": tf_config(addresses, i)}
            workers.append(subprocess.Popen([nlpapps_exe(), *args], stdout=o, stderr=e, env=env))
    try:
        for w in workers:
            w.wait(timeout=400)
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    return out, [(w.returncode, o.read_text(), e.read_text()) for w, (o, e) in zip(workers, logs)]


def test_two_workers_train_one_model_together(two_workers):
    out, results = two_workers
    for code, stdout, stderr in results:
        assert code == 0, stdout + stderr
        assert "training on 2 devices in sync" in stdout
    digests = [re.search(r"final weights (\w+)", stdout).group(1) for _, stdout, _ in results]
    assert digests[0] == digests[1]  # every step was the same on both: the same weights at the end


def test_two_workers_write_exactly_one_export_whose_loss_fell(two_workers):
    out, results = two_workers
    exports = sorted(out.glob("sentiment/*/saved_model.pb"))
    assert [p.parent.name for p in exports] == ["1"]
    assert "exported sentiment model to" in results[0][1]
    assert "the chief writes the export" in results[1][1]
    loss = json.loads((exports[0].parent / "metadata.json").read_text())["history"]["loss"]
    assert len(loss) == 2 and loss[1] < loss[0]
    assert list(out.glob("sentiment/runs/*/logs/train/*")), "the chief writes the TensorBoard logs"
    assert not list(out.glob("sentiment/runs/*/backup.npz")), "a finished run leaves no backup"


def test_mirrored_over_two_logical_cpu_devices_trains_and_exports(small_csv, tmp_path):
    env = {**cli_env(), "NLPAPPS_CPU_DEVICES": "2"}
    args = ["run", "sentiment", "--data", str(small_csv), *TINY, "--epochs", "1", "--strategy", "mirrored"]
    proc = subprocess.run([nlpapps_exe(), *args, "--output", str(tmp_path)], capture_output=True, env=env, timeout=400)
    stdout = proc.stdout.decode()
    assert proc.returncode == 0, stdout + proc.stderr.decode()
    assert "training on 2 devices in sync" in stdout
    meta = json.loads((tmp_path / "sentiment" / "1" / "metadata.json").read_text())
    assert meta["recipe"]["train.strategy"] == "mirrored"
    assert 0.0 <= meta["metrics"]["headline"]["polarity_accuracy"] <= 1.0


def test_a_worker_that_never_joins_ends_with_one_line_after_the_limit(small_csv, tmp_path):
    own, absent = free_ports(2)  # nothing listens on `absent`
    env = {
        **cli_env(),
        "TF_CONFIG": tf_config([f"127.0.0.1:{own}", f"127.0.0.1:{absent}"], 0),
        "NLPAPPS_WORKER_TIMEOUT": "5",
    }
    args = ["run", "sentiment", "--data", str(small_csv), *TINY, "--strategy", "multi-worker"]
    # The subprocess timeout only guards against a hang; the run itself ends after about 5 s.
    proc = subprocess.run(
        [nlpapps_exe(), *args, "--output", str(tmp_path / "out")], capture_output=True, env=env, timeout=300
    )
    assert_one_line_error(proc, "not every worker joined within 5 s")
    assert not (tmp_path / "out").exists()


def test_multi_worker_without_tf_config_is_one_line_exit_2(small_csv, tmp_path):
    env = {k: v for k, v in cli_env().items() if k != "TF_CONFIG"}
    args = ["run", "sentiment", "--data", str(small_csv), "--set", "train.strategy=multi-worker"]
    proc = subprocess.run([nlpapps_exe(), *args, "--output", str(tmp_path)], capture_output=True, env=env)
    assert_one_line_error(proc, "needs TF_CONFIG")


def test_unknown_strategy_lists_the_choices():
    result = invoke(["run", "sentiment", "--strategy", "foo"])
    assert result.exit_code == 2
    assert "'foo' is not one of 'default', 'mirrored', 'multi-worker'" in result.output
    proc = run_nlpapps(["run", "sentiment", "--set", "train.strategy=foo"])
    assert_one_line_error(proc, "train.strategy = 'foo': must be one of default, mirrored, multi-worker")


@pytest.mark.parametrize("task", ["sentiment", "classify", "translate", "forecast"])
def test_every_task_recipe_has_a_strategy(task):
    from nlpapps import recipes

    assert recipes.load(task)["train"]["strategy"] == "default"
