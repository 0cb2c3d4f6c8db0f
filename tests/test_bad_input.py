"""Every mistake a user can make ends with one line on stderr and exit code 2, before any work and
without writing anything: the real console script, in a fresh folder."""

import csv

import pytest
from conftest import SMALL, run_nlpapps, shipped_rows

SETTINGS = [
    ("data.split=[1.0,0.0,0.0]", "data.split"),
    ("text.vocab_size=1", "text.vocab_size"),
    ("train.batch_size=0", "train.batch_size"),
    ("train.epochs=0", "train.epochs"),
    ("model.units=0", "model.units"),
    ("model.dropout=1.5", "model.dropout"),
    ("data.max_bad_rows=2.0", "data.max_bad_rows"),
]


def one_line_error(proc):
    """The single stderr line of a refused command."""
    err = proc.stderr.decode()
    assert proc.returncode == 2, (proc.returncode, err)
    assert "Traceback" not in err and "Traceback" not in proc.stdout.decode()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nlpapps: error: "), err
    return lines[0]


@pytest.mark.parametrize("setting, key", SETTINGS, ids=[s for s, _ in SETTINGS])
def test_out_of_range_setting_is_refused_before_any_work(setting, key, tmp_path):
    proc = run_nlpapps(["run", "sentiment", "--set", setting], cwd=tmp_path)
    assert key in one_line_error(proc)
    assert list(tmp_path.iterdir()) == []  # no saved_models/, no runs/
    assert b"Epoch" not in proc.stdout


@pytest.mark.parametrize(
    "args, words",
    [
        (["--cell", "foo"], "model.cell"),
        (["--set", "model.pooling=sum"], "model.pooling"),
        (["--set", "train.class_weights=maybe"], "train.class_weights"),
    ],
    ids=["cell", "pooling", "class_weights"],
)
def test_unknown_choice_is_refused_before_tensorflow_is_imported(args, words, tmp_path):
    proc = run_nlpapps(["run", "classify", *args], cwd=tmp_path)
    assert words in one_line_error(proc)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_is_refused_before_training(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    proc = run_nlpapps(["run", "sentiment", "--models", str(a_file / "models")], cwd=tmp_path)
    assert "is not a folder" in one_line_error(proc)
    # /proc takes no new files even from root, as a read-only mount or a foreign folder would not.
    proc = run_nlpapps(["run", "sentiment", "--models", "/proc/nlpapps-models"], cwd=tmp_path)
    assert "cannot write in /proc" in one_line_error(proc)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def _scores_csv(path, every):
    """1000 real snippets whose score is the word 'unrated' in one row of `every`."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "score"])
        for i, r in enumerate(shipped_rows(1000)):
            writer.writerow([r["text"], "unrated" if i % every == 0 else r["score"]])
    return path


def test_many_bad_rows_are_refused_with_one_line(tmp_path):
    """5 % of the scores are words: the column is numeric (95 % numbers) with 50 rows that do not fit."""
    data = _scores_csv(tmp_path / "scores.csv", 20)
    proc = run_nlpapps(["run", "sentiment", "--data", str(data), "--set", "data.domain=", *SMALL], cwd=tmp_path)
    line = one_line_error(proc)
    assert "50 of 1000 rows do not fit" in line and "line 2: score 'unrated' is not a number" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.csv"]


def test_sentiment_with_many_classes_is_refused(tmp_path):
    """20 % of the scores are words: the column is text, and its 300 values are no polarity labels."""
    data = _scores_csv(tmp_path / "scores.csv", 5)
    proc = run_nlpapps(["run", "sentiment", "--data", str(data), "--set", "data.domain=", *SMALL], cwd=tmp_path)
    line = one_line_error(proc)
    assert "different values" in line and "at most 5 class labels" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.csv"]


def test_predict_refuses_an_export_of_another_task(sentiment_export, spam_export, tmp_path):
    """The old spelling `predict TASK TEXT --model PATH`: the export must be of that task."""
    for task, export, other in (("classify", sentiment_export, "sentiment"), ("sentiment", spam_export, "classify")):
        proc = run_nlpapps(["predict", task, "hello", "--model", str(export)], cwd=tmp_path)
        warning, error = proc.stderr.decode().splitlines()
        assert warning.startswith(f"nlpapps: warning: `nlpapps predict {task} TEXT...` is deprecated; use ")
        assert proc.returncode == 2 and error == f"nlpapps: error: {export} is a {other} model, not a {task} model"


def test_top_k_is_refused_for_sentiment(sentiment_export, tmp_path):
    proc = run_nlpapps(["predict", "--model", str(sentiment_export), "--top-k", "2", "great"], cwd=tmp_path)
    assert "--top-k is for classify models" in one_line_error(proc)
    assert proc.stdout == b""


def test_predict_without_a_model_and_with_a_folder_that_is_not_an_export(tmp_path):
    line = one_line_error(run_nlpapps(["predict", "--model", "spam", "hello"], cwd=tmp_path))
    assert "no trained spam model" in line
    line = one_line_error(run_nlpapps(["predict", "--model", str(tmp_path), "hi"], cwd=tmp_path))
    assert "not a SavedModel export" in line


def test_recipe_errors(tmp_path):
    (tmp_path / "broken.toml").write_text('task = "sentiment"\n[model]\nunits = "many"\n')
    (tmp_path / "other.toml").write_text('task = "nonsense"\n')
    assert "model.units must be int" in one_line_error(run_nlpapps(["run", str(tmp_path / "broken.toml")]))
    assert "unknown task 'nonsense'" in one_line_error(run_nlpapps(["run", str(tmp_path / "other.toml")]))
    assert "unknown task or recipe 'nope'; choose one of: classify" in one_line_error(
        run_nlpapps(["run", "nope"], cwd=tmp_path)
    )
