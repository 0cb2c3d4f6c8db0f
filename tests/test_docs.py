"""The documentation keeps up with the code: docs/recipes.md is the recipes' current reference, and
every block of README.md and docs/ marked runnable (```python run, ```sh run) runs against real tiny
exports, so a snippet that stops working fails here. Blocks marked `full-run` need a whole training
run and are left to the reader; unmarked blocks are not run."""

import csv
import gzip
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import TF_ONLY, cli_env, invoke, nlpapps_exe

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```(\w+)[ \t]*([\w-]*)[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)


def blocks(text):
    """(line, language, mark, code) of each fenced block of a markdown text."""
    return [(text.count("\n", 0, m.start()) + 1, m[1], m[2], m[3]) for m in FENCE.finditer(text)]


def runnable(paths):
    return [
        (path, line, lang, code)
        for path in paths
        for line, lang, mark, code in blocks(path.read_text(encoding="utf-8"))
        if mark == "run"
    ]


def run_block(lang, code, cwd):
    """A python block runs in a fresh interpreter that may import tensorflow and nothing of nlpapps
    (the exports serve plain TensorFlow); a shell block runs in bash with the console script on PATH."""
    env = cli_env()
    env["PATH"] = f"{Path(nlpapps_exe()).parent}{os.pathsep}{env['PATH']}"
    command = [sys.executable, "-c", TF_ONLY + code] if lang == "python" else ["bash", "-euo", "pipefail", "-c", code]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def docs_cwd(tmp_path_factory, sentiment_export, spam_export):
    """A folder whose saved_models/ holds a tiny real export of every app, as version 1."""
    root = tmp_path_factory.mktemp("docs_models")
    slice_csv = root / "ewr.csv"  # six weeks of one station's hourly readings, as shipped
    with gzip.open(ROOT / "nlpapps" / "data" / "shipped" / "nyc_weather_2013.csv.gz", "rt") as f:
        rows = [row for row in csv.reader(f)]
    slice_csv.write_text("\n".join(",".join(r) for r in [rows[0], *[r for r in rows[1:] if "EWR" in r][2000:3000]]))
    tiny = {
        "translate": ["--epochs", "1", "--units", "16", "--set", "model.decoder_units=32"]
        + ["--set", "data.max_source_words=6", "--set", "train.steps_per_epoch=5"],
        "forecast": ["--data", slice_csv, "--epochs", "1", "--units", "8", "--set", "model.ensemble=1"]
        + ["--set", "model.horizon=6", "--set", "train.window=96", "--set", 'data.train_stations=["EWR"]'],
        ROOT / "tasks" / "names.toml": ["--epochs", "1", "--units", "16", "--set", "train.steps_per_epoch=5"]
        + ["--set", "evaluate.unconditional=false", "--set", "evaluate.per_value=5"],
    }
    for task, flags in tiny.items():
        result = invoke(["run", task, *flags, "--output", root / "trained"])
        assert result.exit_code == 0, result.output
    cwd = root / "cwd"
    for name, export in [
        ("sentiment", sentiment_export),
        ("spam", spam_export),
        ("translate", root / "trained" / "translate" / "1"),
        ("forecast", root / "trained" / "forecast" / "1"),
        ("names", root / "trained" / "names" / "1"),
    ]:
        (cwd / "saved_models" / name).mkdir(parents=True)
        (cwd / "saved_models" / name / "1").symlink_to(export, target_is_directory=True)
    return cwd


RUNNABLE = runnable(DOCS)


@pytest.mark.parametrize(
    "path, line, lang, code", RUNNABLE, ids=[f"{p.relative_to(ROOT)}:{line}" for p, line, _, _ in RUNNABLE]
)
def test_runnable_block_runs(docs_cwd, path, line, lang, code):
    done = run_block(lang, code, docs_cwd)
    assert done.returncode == 0, f"{path.name}:{line} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"


def test_a_broken_block_fails(tmp_path):
    """The check can fail: a block that raises, and a command that exits 2, are both caught."""
    page = tmp_path / "page.md"
    page.write_text(
        '```python run\nimport tensorflow\nraise SystemExit("broken")\n```\n\n```sh run\n'
        'nlpapps predict no_such_recipe "text"\n```\n\n```sh full-run\nexit 1\n```\n'
    )
    found = runnable([page])
    assert [(line, lang) for _, line, lang, _ in found] == [(1, "python"), (6, "sh")]
    assert [run_block(lang, code, tmp_path).returncode for _, _, lang, code in found] == [1, 2]


def test_the_readme_is_a_front_door_with_runnable_snippets():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 300
    assert {lang for _, lang, mark, _ in blocks(text) if mark == "run"} == {"python", "sh"}


def test_recipe_reference_is_current():
    from nlpapps import recipe_docs

    assert (ROOT / "docs" / "recipes.md").read_text(encoding="utf-8") == recipe_docs.markdown(), (
        "docs/recipes.md is stale: python -m nlpapps.recipe_docs > docs/recipes.md"
    )


def test_every_key_of_every_recipe_has_a_meaning():
    from nlpapps import recipe_docs

    own, _ = recipe_docs.task_recipes()
    assert own, "no task recipe found"
    for _, path in own:
        text = path.read_text(encoding="utf-8")
        notes = recipe_docs.comments(text)
        keys = [f"{s}.{k}" for s, t in tomllib.loads(text).items() if isinstance(t, dict) for k in t]
        missing = [k for k in keys if not (notes.get(k) or recipe_docs.SHARED.get(k))]
        assert not missing, f"{path.name}: no comment says what these keys do: {missing}"
