"""The `nlpapps` command line: help, version, predict, list, and one-line errors for user mistakes."""

import json
import re

import numpy as np
import pytest
from conftest import SHIPPED_SENTIMENT, SMALL, invoke, run_nlpapps, tree_digest

import nlpapps

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

COMMANDS = ("run", "predict", "list")


# ------------------------------------------------------------------------------ help and version


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_group_help_lists_the_commands(flag):
    result = invoke([flag])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage: nlpapps")
    for command in COMMANDS:
        assert re.search(rf"^\s+{command}\s+\S", result.output, re.M), command


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help(command):
    result = invoke([command, "--help"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: nlpapps {command}")
    assert "--models" in result.output or "--output" in result.output


def test_run_help_names_every_shorthand():
    out = invoke(["run", "--help"]).output
    for flag in (
        "--epochs",
        "--batch-size",
        "--cell",
        "--units",
        "--layers",
        "--bidirectional",
        "--data",
        "--text-column",
        "--label-column",
        "--set",
        "--models",
    ):
        assert flag in out


def test_version():
    result = invoke(["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"nlpapps, version {nlpapps.__version__}"


def test_console_script_version_and_help():
    proc = run_nlpapps(["--version"])
    assert proc.returncode == 0 and proc.stdout.decode().strip() == f"nlpapps, version {nlpapps.__version__}"
    proc = run_nlpapps(["--help"])
    assert proc.returncode == 0 and proc.stdout.decode().startswith("Usage: nlpapps [OPTIONS] COMMAND")
    assert proc.stderr == b""


# ------------------------------------------------------------------------------------------ predict

TEXTS = ["What a wonderful, moving film.", "Dreadful, boring and far too long.", "Ça m'a plu 😀"]


def test_predict_prints_one_tsv_line_per_text(sentiment_export):
    result = invoke(["predict", *TEXTS, "--model", sentiment_export])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == len(TEXTS)
    for line, text in zip(lines, TEXTS):
        got_text, label, score = line.split("\t")
        assert got_text == text
        assert label in ("negative", "positive")
        assert -4.0 <= float(score) <= 4.0
    assert float(lines[0].split("\t")[2]) > float(lines[1].split("\t")[2])


def test_predict_tsv_keeps_one_line_and_three_columns_per_text(sentiment_export):
    """Texts given as arguments may hold tabs and newlines; the TSV must still be one row each."""
    texts = ["first line\nsecond line", "a\ttabbed text"]
    result = invoke(["predict", *texts, "--model", sentiment_export])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == len(texts)
    assert all(len(line.split("\t")) == 3 for line in lines)


def test_predict_json_lines(sentiment_export):
    result = invoke(["predict", "--json", *TEXTS, "--model", sentiment_export])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["text"] for r in rows] == TEXTS
    for r in rows:
        assert set(r) == {"text", "label", "score"}
        assert r["label"] in ("negative", "positive") and isinstance(r["score"], float)


def test_predict_reads_stdin_lines(sentiment_export):
    stdin = b"Loved it!\r\nHated it.\n\n" + b"\xff\xfe bad bytes\n"
    result = invoke(["predict", "--json", "-", "--model", sentiment_export], input=stdin)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["text"] for r in rows] == ["Loved it!", "Hated it.", "", "\ufffd\ufffd bad bytes"]
    assert all(r["label"] in ("negative", "neutral", "positive") for r in rows)
    assert rows[2]["label"] == "neutral" and rows[2]["score"] == 0.0  # an empty line: nothing to judge


def test_predict_uses_the_newest_version_by_default(label_only_run, models_root):
    # version 2 is the label-only model (classes neg/pos): the default must pick it, not version 1
    result = invoke(["predict", "--model", "sentiment", "--models", models_root, "--json", "good", "bad"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 2 and {r["label"] for r in rows} <= {"neg", "pos"}
    assert all(0.0 <= r["score"] <= 1.0 for r in rows)


def test_predict_with_a_folder_that_is_not_an_export(tmp_path):
    result = invoke(["predict", "--model", tmp_path, "hello"])
    assert result.exit_code == 2
    expected = f"nlpapps: error: {tmp_path}: not a SavedModel export"
    assert result.stderr.strip() == expected


# --------------------------------------------------------------------------------------------- list


def test_list_shows_versions_and_headline_metrics(label_only_run, sentiment_export, models_root):
    result = invoke(["list", "--models", models_root])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "sentiment" in out.splitlines()[0]  # tasks
    assert re.search(r"^\s+sentiment\s+\S+sentiment\.toml$", out, re.M)  # recipes
    meta = json.loads((sentiment_export / "metadata.json").read_text())
    line1 = next(line for line in out.splitlines() if line.strip().startswith(str(sentiment_export)))
    assert f"polarity_accuracy {meta['metrics']['headline']['polarity_accuracy']:.3f}" in line1
    assert f"score_pearson {meta['metrics']['headline']['score_pearson']:.3f}" in line1
    assert str(label_only_run[0]) in out
    assert f"{models_root}/sentiment/runs" not in out  # training runs are not saved models


def test_list_without_models(tmp_path):
    result = invoke(["list", "--models", tmp_path])
    assert result.exit_code == 0
    assert "(none yet" in result.stdout


# ------------------------------------------------------------------------------------- user errors


@pytest.fixture(scope="module")
def data_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    (folder / "empty.csv").write_bytes(b"")
    (folder / "good.csv").write_text("text,score\nGreat!,3\nAwful.,-3\nFine,1\nMeh,-1\n", encoding="utf-8")
    (folder / "spam_recipe.toml").write_text('task = "spam"\n', encoding="utf-8")
    return folder


@pytest.fixture
def output_with_a_saved_model(tmp_path):
    """An output folder that already holds version 1 of a sentiment export (a stand-in)."""
    existing = tmp_path / "out" / "sentiment" / "1"
    existing.mkdir(parents=True)
    (existing / "saved_model.pb").write_bytes(b"already here")
    (existing / "metadata.json").write_text('{"task": "sentiment"}')
    return tmp_path / "out"


BAD_RUNS = {
    "unknown task": (["run", "nope"], "unknown task or recipe 'nope'"),
    "missing data file": (["run", "sentiment", "--data", "{data}/absent.csv"], "data file not found"),
    "missing column": (["run", "sentiment", "--data", "{data}/good.csv", "--text-column", "nope"], "no column 'nope'"),
    "empty data file": (["run", "sentiment", "--data", "{data}/empty.csv"], "no rows"),
    "unknown --set key": (["run", "sentiment", "--set", "model.nope=3"], "unknown setting 'model.nope'"),
    "unknown cell": (
        ["run", "sentiment", "--cell", "foo"],
        "model.cell = 'foo': must be one of rnn, lstm, gru, peephole",
    ),
    # tasks/spam.toml is a classify recipe, not a task schema (no small settings: they would fail first)
    "recipe naming a non-task": (["run", "{data}/spam_recipe.toml"], "'spam'"),
}
NO_SMALL = {"recipe naming a non-task"}


@pytest.mark.parametrize("case", list(BAD_RUNS))
def test_bad_run_is_one_line_exit_2_and_saves_nothing(case, data_files, output_with_a_saved_model):
    args, words = BAD_RUNS[case]
    args = [a.format(data=data_files) for a in args] + ([] if case in NO_SMALL else SMALL)
    args += ["--models", str(output_with_a_saved_model)]
    before = tree_digest(output_with_a_saved_model)
    proc = run_nlpapps(args)
    assert_one_line_error(proc, words)
    assert tree_digest(output_with_a_saved_model) == before  # nothing new, nothing lost


def test_predict_before_any_model_is_one_line_exit_2(tmp_path):
    proc = run_nlpapps(["predict", "--model", "sentiment", "--models", str(tmp_path), "Great film"])
    assert_one_line_error(proc, "no trained sentiment model")
    assert list(tmp_path.iterdir()) == []


def test_predict_unknown_task_is_one_line_exit_2(tmp_path):
    proc = run_nlpapps(["predict", "--model", "nope", "--models", str(tmp_path), "Great film"])
    assert_one_line_error(proc, "no trained nope model")


def assert_one_line_error(proc, words):
    stderr = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 2, stderr
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    assert lines[0].startswith("nlpapps: error: ")
    assert words in lines[0]


def test_data_path_with_non_bmp_characters_reaches_the_loader_intact(tmp_path):
    """--data goes through the recipe's --set parser: a path with an emoji must arrive unchanged
    (here: an empty file, so the loader reports 'no rows' for exactly that path)."""
    path = tmp_path / "critiques_😀.csv"
    path.write_bytes(b"")
    result = invoke(["run", "sentiment", "--data", path, "--models", tmp_path / "out"])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"nlpapps: error: {path}: no rows"


def test_numeric_text_column_is_a_user_error(data_files, tmp_path):
    result = invoke(
        ["run", "sentiment", "--data", data_files / "good.csv", "--text-column", "score", "--models", tmp_path]
    )
    assert result.exit_code == 2
    assert result.stderr.startswith("nlpapps: error: text column 'score' holds numbers")
    assert not (tmp_path / "sentiment").exists() or not any(
        p.name.isdigit() for p in (tmp_path / "sentiment").iterdir()
    )


# ----------------------------------------------------------------------- answers that must be right


def test_predict_names_the_command_for_a_translate_model(tmp_path):
    """`predict translate` meets a translate export: the error says which command serves it."""
    stand_in = tmp_path / "translate" / "1"
    stand_in.mkdir(parents=True)
    (stand_in / "saved_model.pb").write_bytes(b"a stand-in: refused before it is read")
    (stand_in / "metadata.json").write_text('{"task": "translate"}')
    proc = run_nlpapps(["predict", "--model", "translate", "--models", str(tmp_path), "Hello"])
    assert_one_line_error(proc, f"{stand_in} is a translate model: `nlpapps predict` serves sentiment and classify")
    assert "use `nlpapps translate`" in proc.stderr.decode()
    assert "not a translate model" not in proc.stderr.decode()


def test_binary_data_shows_a_short_escaped_excerpt(tmp_path):
    """A gzip file given as CSV: the error quotes its 'header' escaped and short, no NUL, no raw byte."""
    binary = tmp_path / "reviews.csv"
    binary.write_bytes(SHIPPED_SENTIMENT.read_bytes()[:4000])
    proc = run_nlpapps(["run", "sentiment", "--data", str(binary), "--models", str(tmp_path / "out")])
    assert_one_line_error(proc, "no column 'text'; columns are: ")
    line = proc.stderr.decode("utf-8")  # strict: a lone surrogate or stray byte would fail here
    assert "\x00" not in line and all(c.isprintable() for c in line.rstrip("\n"))
    assert "\\x" in line  # the bytes are shown escaped
    assert len(line) < 400


@pytest.mark.parametrize("text", ["", "   \t "])
def test_a_text_without_words_gets_no_confident_label(sentiment_export, text):
    """Nothing to judge: the neutral middle (score 0) and every polarity equally likely."""
    result = invoke(["predict", "--json", text, "great film", "--model", sentiment_export])
    assert result.exit_code == 0, result.output
    empty, words = (json.loads(line) for line in result.stdout.splitlines())
    assert empty == {"text": text, "label": "neutral", "score": 0.0}
    assert words["label"] in ("negative", "neutral", "positive") and words["score"] != 0.0
    import tensorflow as tf

    served = tf.saved_model.load(str(sentiment_export)).signatures["serving_default"](text=tf.constant([text]))
    probabilities = served["probabilities"].numpy()
    np.testing.assert_allclose(probabilities, 1 / probabilities.shape[-1])  # every class equally likely


def test_run_explains_the_scales_and_score_r_and_what_to_try_next(sentiment_run, models_root):
    path, output = sentiment_run
    assert "on the training scale: the data's score / 4 (-1..1)" in output
    assert "score_r, the Pearson correlation of predicted with true scores, on the data's scale (-4..4)" in output
    hint, last = output.rstrip().splitlines()[-2:]
    assert last == f"exported sentiment model to {path}"
    assert hint.startswith("try it: nlpapps predict ") and f"--models {models_root}" in hint, hint


# ---------------------------------------------------------------------- one way to name a model


@pytest.mark.parametrize("command", ["predict", "translate", "forecast", "serve", "list", "run"])
def test_every_command_names_the_model_and_its_folder_one_way(command):
    out = invoke([command, "--help"]).output
    assert re.search(r"--models DIR\s", out), out
    assert "--output" not in out and "--name" not in out
    if command in ("predict", "translate", "forecast"):
        assert "-m, --model NAME|PATH" in out and "the recipe it was trained with" in out
    if command == "serve":
        assert "-m, --model NAME" in out
    if command == "run":
        assert "--cell [rnn|lstm|gru|peephole]" in out  # the choices, as --strategy lists its own
        assert "`--model NAME` in the other commands" in " ".join(out.split())


def test_a_model_by_name_or_by_folder(label_only_run, models_root):
    """--model NAME is the newest version under --models; --model FOLDER a model's newest version,
    or one export: version 2 is the label-only model (neg/pos), version 1 the scored one."""
    by_name = invoke(["predict", "--model", "sentiment", "--models", models_root, "--json", "good"])
    by_folder = invoke(["predict", "--model", models_root / "sentiment", "--json", "good"])
    one = invoke(["predict", "-m", models_root / "sentiment" / "1", "--json", "good"])
    assert by_name.exit_code == by_folder.exit_code == one.exit_code == 0, by_name.output + by_folder.output
    assert by_name.stdout == by_folder.stdout and json.loads(by_name.stdout)["label"] in ("neg", "pos")
    assert json.loads(one.stdout)["label"] in ("negative", "neutral", "positive")


def test_old_spellings_work_with_a_deprecation_line(sentiment_export, models_root, tmp_path):
    old = invoke(["predict", "sentiment", "good", "--model", sentiment_export, "--json"])
    new = invoke(["predict", "good", "--model", sentiment_export, "--json"])
    assert old.exit_code == 0 and old.stdout == new.stdout and new.stderr == ""
    assert old.stderr.startswith("nlpapps: warning: `nlpapps predict sentiment TEXT...` is deprecated; use ")
    for args, deprecated in (
        (["translate", "--name", "nope", "Hello"], "--name is deprecated; use --model nope"),
        (
            ["forecast", "nope", "--stream"],
            "`nlpapps forecast nope` is deprecated; use `nlpapps forecast --model nope`",
        ),
    ):
        result = invoke([*args, "--models", tmp_path])
        warning, error = result.stderr.splitlines()
        assert warning == f"nlpapps: warning: {deprecated}"
        assert result.exit_code == 2 and error.startswith("nlpapps: error: no trained nope model")
    result = invoke(["run", "nope", "--output", tmp_path])  # run's old --output: the same as --models
    assert result.exit_code == 2 and "unknown task or recipe 'nope'" in result.stderr


def test_show_attention_refuses_another_beam_than_the_one_it_draws(tmp_path):
    stand_in = tmp_path / "translate" / "1"
    stand_in.mkdir(parents=True)
    (stand_in / "saved_model.pb").write_bytes(b"a stand-in: refused before it is read")
    (stand_in / "metadata.json").write_text('{"task": "translate", "recipe": {"decode.beam_width": 4}}')
    args = ["translate", "--models", tmp_path, "--show-attention", tmp_path / "a.png", "Hello"]
    result = invoke([*args, "--beam", "1"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "--show-attention draws the model's own beam (decode.beam_width = 4): drop --beam 1" in result.stderr
