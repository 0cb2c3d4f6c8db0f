"""Shared fixtures: the real `nlpapps` console script, and ONE small sentiment model trained per
session (plus one tiny label-only model written beside it as version 2, and a small spam model
from tasks/spam.toml), reused by every test."""

import csv
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SHIPPED_SENTIMENT = (
    Path(__file__).resolve().parent.parent / "nlpapps" / "data" / "shipped" / "sentiment_snippets.tsv.gz"
)

# Small settings: one epoch of a tiny bidirectional GRU on the whole shipped corpus (~20 s on 2 cores).
SMALL = ["--epochs", "1", "--units", "8", "--set", "text.vocab_size=2000", "--set", "model.embedding_dim=16"]


# The start of every script that proves an export serves in a fresh interpreter that may import
# tensorflow and nothing of nlpapps (an import of it fails).
TF_ONLY = r"""
import json, sys

class NoNlpapps:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "nlpapps":
            raise ImportError("nlpapps must not be needed to serve an export")

sys.meta_path.insert(0, NoNlpapps())
"""


def last_json_line(script, *args, cwd=None, timeout=300):
    """Run `script` with `args` in a fresh interpreter; the JSON of the last line it prints."""
    proc = subprocess.run(
        [sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def nlpapps_exe():
    """The installed console script (there is no `python -m nlpapps`)."""
    beside = Path(sys.executable).parent / "nlpapps"
    found = str(beside) if beside.is_file() else shutil.which("nlpapps")
    assert found, "the nlpapps console script is not installed"
    return found


def cli_env():
    """The environment a user's shell would give: no log-level hints from the test process."""
    env = dict(os.environ)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def run_nlpapps(args, *, cwd=None, input=None, timeout=300):
    """Run the real console script; returns CompletedProcess with bytes stdout/stderr."""
    return subprocess.run(
        [nlpapps_exe(), *args], cwd=cwd, input=input, capture_output=True, env=cli_env(), timeout=timeout
    )


def invoke(args, **kwargs):
    """The click group in-process, as CliRunner sees it (main() sys.exits; CliRunner catches it)."""
    from click.testing import CliRunner

    from nlpapps.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args], prog_name="nlpapps", **kwargs)


def tree_digest(folder):
    """{relative path: sha256} of every file under `folder`."""
    folder = Path(folder)
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def shipped_rows(limit=None):
    """Rows of the shipped sentiment snippets as dicts (domain, score, text)."""
    with gzip.open(SHIPPED_SENTIMENT, "rt", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return rows[:limit] if limit else rows


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """The suite runs on two pytest-xdist workers (--dist loadgroup), and a session or module fixture
    is made once per worker that needs it. So the tests that share one of ours (a trained model, its
    export, a written file), directly or through another test that shares it, form one group, which
    one worker runs: nothing is trained twice. The rest spread freely."""
    shared = {}  # test -> the suite's session and module fixtures it uses, as "where::name"
    for item in items:
        defs = getattr(item, "_fixtureinfo", None)
        shared[item] = sorted(
            f"{d[-1].baseid}::{name}"
            for name, d in (defs.name2fixturedefs.items() if defs else ())
            if d and d[-1].scope != "function" and d[-1].baseid  # baseid "": pytest's own (tmp_path_factory)
        )
    group = {}  # fixture -> its group's set of fixtures
    for keys in shared.values():
        merged = set(keys).union(*(group.get(k, ()) for k in keys))
        for k in merged:
            group[k] = merged
    for item, keys in shared.items():
        if keys:  # named by one of its fixtures, a conftest one first: the same name in every worker
            name = min(group[keys[0]], key=lambda k: (".py" in k, k)).split("/")[-1].replace("::", ".")
            item.add_marker(pytest.mark.xdist_group(name))
            if getattr(config.option, "loadgroup", False) and hasattr(type(getattr(item, "_id", None)), "parse"):
                # pytest-xdist 3.8 tells its scheduler a test's group by renaming the test "<id>@<group>"
                # in an attribute that pytest 9.2 no longer reads (_nodeid): the same rename, where
                # pytest 9.2 keeps the id. Without it every test would be scheduled on its own.
                item._id = type(item._id).parse(f"{item.nodeid}@{name}")


@pytest.fixture(scope="session")
def models_root(tmp_path_factory):
    return tmp_path_factory.mktemp("saved_models")


@pytest.fixture(scope="session")
def sentiment_run(models_root):
    """`nlpapps run sentiment` with small settings, once per session: (export path, CLI output)."""
    result = invoke(["run", "sentiment", *SMALL, "--output", models_root])
    assert result.exit_code == 0, f"training failed:\n{result.output}\n{result.exception!r}"
    path = models_root / "sentiment" / "1"
    assert path.is_dir(), result.output
    return path, result.output


@pytest.fixture(scope="session")
def sentiment_export(sentiment_run):
    return sentiment_run[0]


@pytest.fixture(scope="session")
def label_only_csv(tmp_path_factory):
    """A tiny label-only CSV of real snippets: text, label (neg/pos); no score, no domain."""
    path = tmp_path_factory.mktemp("label_only") / "reviews.csv"
    rows = shipped_rows()
    pos = [r for r in rows if float(r["score"]) >= 1.0][:40]
    neg = [r for r in rows if float(r["score"]) <= -1.0][:40]
    rows = [r for pair in zip(pos, neg) for r in pair]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for r in rows:
            writer.writerow([r["text"], "pos" if float(r["score"]) > 0 else "neg"])
    return path


@pytest.fixture(scope="session")
def label_only_run(sentiment_export, models_root, label_only_csv):
    """A second run into the same output root: the label-only model becomes version 2.
    Returns (export path, digest of version 1 taken just before this run)."""
    before = tree_digest(sentiment_export)
    result = invoke(
        [
            "run",
            "sentiment",
            "--data",
            label_only_csv,
            "--label-column",
            "label",
            "--set",
            "data.domain=",
            *SMALL,
            "--output",
            models_root,
        ]
    )
    assert result.exit_code == 0, f"label-only training failed:\n{result.output}\n{result.exception!r}"
    return models_root / "sentiment" / "2", before


@pytest.fixture(scope="session")
def spam_export(models_root):
    """`nlpapps run tasks/spam.toml` (a classify recipe) with small settings into the same root."""
    recipe = Path(__file__).resolve().parent.parent / "tasks" / "spam.toml"
    result = invoke(["run", recipe, *SMALL, "--output", models_root])
    assert result.exit_code == 0, f"spam training failed:\n{result.output}\n{result.exception!r}"
    return models_root / "spam" / "1"
