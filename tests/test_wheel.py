"""A normal (not editable) install works: the wheel carries the recipes and the shipped data, and
its console script trains and predicts from a folder that is not the checkout."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SMALL

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The wheel built from this checkout, unpacked into its own folder with its console script."""
    tmp = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp / "dist"),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    wheel = next((tmp / "dist").glob("nlpapps-*.whl"))
    target = tmp / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "PYTHONIOENCODING": "utf-8"}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return target, elsewhere, env


def _run(installed, *args):
    target, elsewhere, env = installed
    return subprocess.run(
        [str(target / "bin" / "nlpapps"), *args], cwd=elsewhere, capture_output=True, text=True, env=env, timeout=600
    )


def test_the_installed_copy_is_the_one_imported(installed):
    target, elsewhere, env = installed
    proc = subprocess.run(
        [sys.executable, "-c", "import nlpapps; print(nlpapps.__file__)"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        env=env,
    )
    assert Path(proc.stdout.strip()).is_relative_to(target), proc.stdout


def test_installed_recipes_are_listed_from_another_folder(installed):
    proc = _run(installed, "list")
    assert proc.returncode == 0, proc.stderr
    for name in ("sentiment", "classify", "spam"):
        assert f"  {name} " in proc.stdout
    assert str(ROOT) not in proc.stdout  # found in the installed package, not the checkout


def test_installed_wheel_trains_and_predicts_from_another_folder(installed):
    _, elsewhere, _ = installed
    proc = _run(installed, "run", "sentiment", *SMALL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (elsewhere / "saved_models" / "sentiment" / "1" / "saved_model.pb").is_file()
    proc = _run(installed, "predict", "sentiment", "What a wonderful, moving film.", "Dreadful and far too long.")
    assert proc.returncode == 0, proc.stderr
    labels = [line.split("\t")[1] for line in proc.stdout.splitlines()]
    assert len(labels) == 2 and set(labels) <= {"negative", "neutral", "positive"}
