"""Exports a user can trust: named by recipe (each its own served model), readable by another
account, and a sentiment label that never contradicts its score, on every text of the test split."""

import csv
import json
import os
import stat

import numpy as np
import pytest
from conftest import invoke, last_json_line, run_nlpapps

from nlpapps import recipes
from nlpapps.data import stream

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

MOON = "How far is the moon from the earth?"

# A process that imports tensorflow only: every text of a file through serving_default.
LABEL_SCORE_SCRIPT = r"""
import json, sys
import tensorflow as tf
texts = json.load(open(sys.argv[2]))
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
labels, scores = [], []
for i in range(0, len(texts), 512):
    out = serve(text=tf.constant(texts[i:i + 512]))
    labels += [x.decode() for x in out["label"].numpy().tolist()]
    scores += out["score"].numpy().tolist()
print(json.dumps({"label": labels, "score": scores}))
"""


def _label_and_score(export, texts, tmp_path):
    path = tmp_path / "texts.json"
    path.write_text(json.dumps(list(texts)))
    out = last_json_line(LABEL_SCORE_SCRIPT, export, path, cwd=tmp_path)
    return np.array(out["label"]), np.array(out["score"])


def _test_texts(recipe_name):
    """The texts of the recipe's test split, as training reads it."""
    d = recipes.load(recipe_name)["data"]
    source = stream.Source(
        d["source"], {"text": d["text"], "target": d["label"]}, fractions=tuple(d["split"]), seed=d["seed"]
    )
    source.profile(0, d["max_bad_rows"])
    return [t for batch in source.batches(stream.SPLITS.index("test")) for t in batch[source.names.index("text")]]


# --------------------------------------------------------------- sentiment: label agrees with score


def test_label_is_the_score_band_on_every_test_text(sentiment_export, tmp_path):
    texts = _test_texts("sentiment")
    assert len(texts) > 1800
    labels, scores = _label_and_score(sentiment_export, texts, tmp_path)
    expected = np.where(scores > 0, "positive", np.where(scores < 0, "negative", "neutral"))
    disagree = int((labels != expected).sum())
    assert disagree == 0, f"{disagree} of {len(texts)} labels contradict their score"
    assert {"positive", "negative"} <= set(labels)


def test_label_only_model_label_agrees_with_its_positive_probability(label_only_run, label_only_csv, tmp_path):
    export, _ = label_only_run
    with open(label_only_csv, newline="", encoding="utf-8") as f:
        texts = [r["text"] for r in csv.DictReader(f)] + ["", "great", "awful"]
    labels, scores = _label_and_score(export, texts, tmp_path)
    assert ((labels == "pos") == (scores > 0.5)).all()


def test_a_score_of_exactly_zero_is_neutral_in_data_and_export():
    import tensorflow as tf

    from nlpapps.tasks import sentiment

    scores = np.array([-1.0, -1e-7, 0.0, 1e-7, 0.3, 1.0])
    assert list(sentiment.polarity(scores, 0.0)) == [
        "negative",
        "negative",
        "neutral",
        "positive",
        "positive",
        "positive",
    ]
    assert list(sentiment.polarity(scores, 0.5)) == ["negative", "neutral", "neutral", "neutral", "neutral", "positive"]
    for band in (0.0, 0.5):
        served = [x.decode() for x in sentiment.polarity_tf(tf.constant(scores), band).numpy()]
        assert served == list(sentiment.polarity(scores, band))


# ------------------------------------------------------------------------ exports named by recipe


def test_a_recipe_exports_under_its_own_name(spam_export, models_root):
    assert spam_export == models_root / "spam" / "1" and (spam_export / "saved_model.pb").is_file()
    meta = json.loads((spam_export / "metadata.json").read_text())
    assert meta["task"] == "classify" and meta["model"] == "spam" and meta["classes"] == ["ham", "spam"]
    assert not (models_root / "classify").exists()


def test_predict_by_recipe_name_and_classify_is_not_the_spam_model(spam_export, models_root, tmp_path):
    proc = run_nlpapps(["predict", "spam", MOON, "--models", str(models_root), "--json"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()
    row = json.loads(proc.stdout)
    assert row["text"] == MOON and row["label"] in ("ham", "spam")
    proc = run_nlpapps(["predict", "classify", MOON, "--models", str(models_root)], cwd=tmp_path)
    assert proc.returncode == 2 and b"no trained classify model" in proc.stderr


def test_list_shows_the_recipe_and_task_of_each_export(spam_export, sentiment_export, models_root):
    result = invoke(["list", "--models", models_root])
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if str(spam_export) in x)
    assert " classify " in f" {line} " and "spam" in line
    line = next(x for x in result.output.splitlines() if str(sentiment_export) in x)
    assert " sentiment " in f" {line} "


# ---------------------------------------------------------------------------- readable by others


def test_export_modes_follow_the_umask(spam_export):
    """Created under this process' umask (022 on CI and most systems: 0755 folders, 0644 files),
    not mkdtemp's 0700, so another account (TF Serving's) can read the model."""
    umask = os.umask(0)
    os.umask(umask)
    modes = {p: stat.S_IMODE(p.stat().st_mode) for p in [spam_export, *spam_export.rglob("*")]}
    for path, mode in modes.items():
        assert mode == (0o777 if path.is_dir() else 0o666) & ~umask, (path, oct(mode))
    if umask == 0o022:
        assert modes[spam_export] == 0o755 and modes[spam_export / "saved_model.pb"] == 0o644
