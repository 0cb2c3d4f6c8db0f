"""`--data tfds:NAME` through tensorflow-datasets' real builder machinery (no mock_data): a tiny
dataset builder of real snippets is prepared into a temporary data_dir, then the CLI, in another
process that has never seen the builder's code, finds it there through TFDS_DATA_DIR."""

import csv
import gzip
import re
import subprocess

import pytest
from conftest import SHIPPED_SENTIMENT, cli_env, nlpapps_exe

tfds = pytest.importorskip("tensorflow_datasets")

TINY = ["--epochs", "1", "--units", "8", "--set", "text.vocab_size=500", "--set", "model.embedding_dim=8"]


class TinyReviews(tfds.core.GeneratorBasedBuilder):
    """600 shipped snippets as neg/pos reviews, with train and test splits as imdb_reviews has."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {"text": tfds.features.Text(), "label": tfds.features.ClassLabel(names=["neg", "pos"])}
            ),
        )

    def _split_generators(self, dl_manager):
        with gzip.open(SHIPPED_SENTIMENT, "rt", encoding="utf-8") as f:
            rows = [r for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE) if float(r["score"])]
        rows = rows[::25][:600]
        return {"train": self._generate_examples(rows[:450]), "test": self._generate_examples(rows[450:])}

    def _generate_examples(self, rows):
        for i, r in enumerate(rows):
            yield i, {"text": r["text"], "label": "pos" if float(r["score"]) > 0 else "neg"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tfds")
    builder = TinyReviews(data_dir=str(root))
    builder.download_and_prepare()
    assert builder.info.splits["train"].num_examples == 450
    return root


def _nlpapps(args, data_dir, cwd):
    env = {**cli_env(), "TFDS_DATA_DIR": str(data_dir)}
    return subprocess.run([nlpapps_exe(), *args], cwd=cwd, capture_output=True, env=env, timeout=300)


def test_prepared_tfds_dataset_trains_with_no_chatter_on_stderr(data_dir, tmp_path):
    proc = _nlpapps(
        ["run", "sentiment", "--data", "tfds:tiny_reviews", *TINY, "--output", "models"], data_dir, tmp_path
    )
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    assert proc.stderr == b""
    out = proc.stdout.decode()
    # tfds' own test split is kept; validation is carved from its train split by the row hash (~1/9)
    found = re.search(r"data: tfds:tiny_reviews: train (\d+), validation (\d+), test 150 ", out)
    assert found and int(found[1]) + int(found[2]) == 450 and 25 <= int(found[2]) <= 80
    assert (tmp_path / "models" / "sentiment" / "1" / "saved_model.pb").is_file()


def test_unknown_tfds_name_is_one_line_and_nothing_else(data_dir, tmp_path):
    proc = _nlpapps(["run", "sentiment", "--data", "tfds:no_such_dataset_xyz", *TINY], data_dir, tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.decode().splitlines() == [
        "nlpapps: error: tfds:no_such_dataset_xyz: cannot load (Dataset no_such_dataset_xyz not found.)"
    ]
