"""Sentiment end to end: one small model trained per session (conftest), its export layout, metadata,
SavedModel in a fresh TensorFlow-only process, the .keras twin, and a label-only second run."""

import json
import re

import numpy as np
import pytest
from conftest import TF_ONLY, last_json_line, shipped_rows, tree_digest

# Keras' own saving code calls np.array(tf.Variable) which numpy 2 flags; not ours.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

POSITIVE = "What a wonderful, moving film."
NEGATIVE = "Dreadful, boring and far too long."
LONG = " ".join(
    ["The plot is dull and the acting is wooden."] * 15 + ["But the ending is wonderful, moving and brilliant!"] * 10
)  # > 100 tokens

# Runs in a fresh interpreter that may import tensorflow and nothing of nlpapps (imports of it fail).
SERVE_SCRIPT = (
    TF_ONLY
    + r"""
import tensorflow as tf

texts = json.loads(sys.argv[2])
texts = [t.encode("latin-1") if i in json.loads(sys.argv[3]) else t.encode("utf-8") for i, t in enumerate(texts)]
loaded = tf.saved_model.load(sys.argv[1])
serve = loaded.signatures["serving_default"]
out = serve(text=tf.constant(texts, dtype=tf.string))

def plain(v):
    v = v.numpy()
    return [x.decode() for x in v.tolist()] if v.dtype == object else v.tolist()

print(json.dumps({
    "inputs": {k: [s.dtype.name, s.shape.as_list()] for k, s in serve.structured_input_signature[1].items()},
    "outputs": {k: plain(v) for k, v in out.items()},
    "dtypes": {k: v.dtype.name for k, v in out.items()},
    "nlpapps_imported": sorted(m for m in sys.modules if m.split(".")[0] == "nlpapps"),
}))
"""
)


def serve_in_fresh_process(export, texts, raw_bytes=(), cwd=None):
    """Outputs of the export's serving_default on `texts`; items listed in raw_bytes are latin-1 bytes."""
    return last_json_line(SERVE_SCRIPT, export, json.dumps(texts), json.dumps(list(raw_bytes)), cwd=cwd, timeout=180)


@pytest.fixture(scope="module")
def metadata(sentiment_export):
    return json.loads((sentiment_export / "metadata.json").read_text())


@pytest.fixture(scope="module")
def served(sentiment_export, tmp_path_factory):
    texts = [POSITIVE, NEGATIVE, "", "\xff\xfe bad", "¡Qué película! ÉTÉ 😀 :)", LONG]
    return serve_in_fresh_process(sentiment_export, texts, raw_bytes=[3], cwd=tmp_path_factory.mktemp("cwd"))


# ---------------------------------------------------------------------------------- export layout


def test_export_layout(sentiment_export, models_root):
    assert sentiment_export == models_root / "sentiment" / "1"
    for name in ("saved_model.pb", "metadata.json", "model.keras", "training_curves.png"):
        assert (sentiment_export / name).is_file(), name
    assert any((sentiment_export / "variables").glob("variables.index"))
    # written to a temporary folder and renamed: nothing half-written is left behind
    assert not [p for p in (models_root / "sentiment").iterdir() if p.name.startswith(".")]


def test_training_curves_is_a_png(sentiment_export):
    data = (sentiment_export / "training_curves.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000


def test_run_prints_metrics_table_and_where_the_model_went(sentiment_run):
    path, output = sentiment_run
    assert output.rstrip().endswith(f"exported sentiment model to {path}")
    table = output[output.index("test split") :]
    for word in ("accuracy", "macro_f1", "score_r", "vader_accuracy", "vader_r", "majority_accuracy", "tweet"):
        assert word in table


def test_completed_run_leaves_no_resume_backup(sentiment_export, models_root):
    """The resume backup is for interrupted runs: once finished, running the same command
    again must train afresh, not 'resume' a finished run with zero epochs left."""
    runs = list((models_root / "sentiment" / "runs").iterdir())
    assert runs, "no training run folder"
    assert not [p for r in runs for p in r.glob("backup*")]


# --------------------------------------------------------------------------------------- metadata


def test_metadata_records_task_recipe_and_data(metadata):
    assert metadata["task"] == "sentiment"
    recipe = metadata["recipe"]
    assert recipe["model.units"] == 8 and recipe["text.vocab_size"] == 2000
    assert recipe["model.embedding_dim"] == 16 and recipe["train.epochs"] == 1
    assert recipe["data.source"] == "shipped:sentiment_snippets"
    # 139 snippets are rated exactly 0: with neutral_band = 0 they train the score head alone, and
    # neutral is no polarity class (the label is the score's sign, never exactly 0)
    assert metadata["classes"] == ["negative", "positive"]
    # each row's split comes from a seeded hash of its text: about 80/10/10, the same on every run
    assert metadata["data"]["sizes"] == {"train": 14756, "validation": 1899, "test": 1858}
    assert metadata["data"]["scored"] is True and metadata["data"]["score_scale"] == 4.0
    assert len(metadata["history"]["loss"]) == 1 and "val_loss" in metadata["history"]
    assert metadata["created"]


def test_metadata_metrics_headline_and_per_domain_rows(metadata):
    metrics = metadata["metrics"]
    headline = metrics["headline"]
    assert set(headline) == {"polarity_accuracy", "score_pearson"}
    rows = {r["group"]: r for r in metrics["test"]}
    assert list(rows) == ["all", "movie", "product", "tweet"]
    assert rows["all"]["texts"] == metadata["data"]["sizes"]["test"]
    assert sum(rows[d]["texts"] for d in ("movie", "product", "tweet")) == rows["all"]["texts"]
    assert headline["polarity_accuracy"] == rows["all"]["accuracy"]
    assert headline["score_pearson"] == rows["all"]["score_r"]
    for row in rows.values():
        assert 0.0 <= row["accuracy"] <= 1.0 and 0.0 <= row["macro_f1"] <= 1.0
        assert row["score_mae"] >= 0.0
    # even one epoch of a tiny model learns something: above the majority baseline, scores correlate
    assert rows["all"]["accuracy"] > rows["all"]["majority_accuracy"] + 0.05
    assert headline["score_pearson"] > 0.3
    assert rows["all"]["score_mae"] < rows["all"]["mean_score_mae"]


def test_vader_row_is_vaderSentiment_on_the_same_test_rows(metadata):
    """VADER's figures per domain are vaderSentiment's compound score on that domain's test rows,
    its label the compound's sign (0: neutral), computed here without nlpapps' pipeline."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    from nlpapps.data import stream

    cuts, vader = stream.cuts_of((0.8, 0.1, 0.1)), SentimentIntensityAnalyzer()
    test = [r for r in shipped_rows() if r["domain"] == "tweet" and stream.split_of(r["text"], 13, cuts) == 2]
    truth = np.array([float(r["score"]) for r in test])
    compound = np.array([vader.polarity_scores(r["text"])["compound"] for r in test])
    tweet = {r["group"]: r for r in metadata["metrics"]["test"]}["tweet"]
    assert tweet["texts"] == len(test)
    assert tweet["vader_accuracy"] == pytest.approx(np.mean(np.sign(compound) == np.sign(truth)), abs=1e-9)
    assert tweet["vader_r"] == pytest.approx(np.corrcoef(truth, compound)[0, 1], abs=1e-9)
    assert tweet["vader_accuracy"] > 0.85  # VADER's authors rated these tweets: the lexicon knows them


# ------------------------------------------------------------------------ SavedModel, fresh process


def test_signature_names_its_input_and_outputs(served):
    assert served["inputs"] == {"text": ["string", [None]]}
    assert set(served["outputs"]) == {"score", "label", "probabilities", "classes"}
    assert served["dtypes"]["score"] == "float32" and served["dtypes"]["label"] == "string"
    assert served["nlpapps_imported"] == []


def test_outputs_are_readable_and_in_range(served):
    out = served["outputs"]
    n = 6
    assert out["classes"] == ["negative", "positive"]
    assert len(out["score"]) == len(out["label"]) == len(out["probabilities"]) == n
    scores, probabilities = np.array(out["score"]), np.array(out["probabilities"])
    assert np.isfinite(scores).all() and (np.abs(scores) <= 4.0).all()
    assert probabilities.shape == (n, 2) and (probabilities >= 0).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert set(out["label"]) <= {"negative", "neutral", "positive"}
    # the label is the score's sign, never contradicting it (0, the empty text's, is neutral)
    assert out["label"] == ["positive" if s > 0 else "negative" if s < 0 else "neutral" for s in scores]


def test_real_sentences_are_scored_the_right_way_round(served):
    out = served["outputs"]
    assert out["score"][0] > out["score"][1] + 1.0
    positive = out["classes"].index("positive")
    assert out["probabilities"][0][positive] > out["probabilities"][1][positive]
    assert out["label"][:2] == ["positive", "negative"]


def test_empty_and_invalid_utf8_text_get_results(served):
    out = served["outputs"]
    assert out["label"][2] == "neutral" and out["score"][2] == 0.0  # "": nothing to judge
    assert out["label"][3] in ("negative", "positive")  # b"\xff\xfe bad"
    assert np.isfinite(out["score"][3]) and abs(out["score"][3]) <= 4.0


def test_only_empty_texts_in_a_batch(sentiment_export, tmp_path):
    out = serve_in_fresh_process(sentiment_export, ["", ""], cwd=tmp_path)["outputs"]
    assert len(out["score"]) == 2 and out["score"][0] == pytest.approx(out["score"][1])


# ---------------------------------------------------------------------------- .keras twin model


@pytest.fixture(scope="module")
def twins(sentiment_export):
    """(reloaded .keras end-to-end model, SavedModel serving function), both in this process."""
    import tensorflow as tf

    from nlpapps import export

    model = export.load_keras(sentiment_export)
    serve = tf.saved_model.load(str(sentiment_export)).signatures["serving_default"]
    return model, serve


def keras_vs_savedmodel(twins, texts):
    import tensorflow as tf

    model, serve = twins
    from_keras = model(tf.constant([[t] for t in texts]), training=False)
    from_keras = from_keras["polarity"] if isinstance(from_keras, dict) else from_keras
    return np.asarray(from_keras), serve(text=tf.constant(texts))["probabilities"].numpy()


def test_keras_model_matches_savedmodel(twins):
    texts = [POSITIVE, NEGATIVE, "Not bad at all!", "ÉTÉ 😀", ""]
    from_keras, from_savedmodel = keras_vs_savedmodel(twins, texts)
    assert from_keras.shape == (len(texts), 2)
    np.testing.assert_allclose(from_keras, from_savedmodel, atol=1e-5)


def test_keras_model_matches_savedmodel_on_text_longer_than_max_tokens(twins):
    """The SavedModel cuts texts to text.max_tokens (100); the .keras twin must do the same."""
    from_keras, from_savedmodel = keras_vs_savedmodel(twins, [LONG, POSITIVE])
    np.testing.assert_allclose(from_keras, from_savedmodel, atol=1e-5)


def test_keras_model_handles_a_batch_of_empty_texts_like_savedmodel(twins):
    from_keras, from_savedmodel = keras_vs_savedmodel(twins, [""])
    np.testing.assert_allclose(from_keras, from_savedmodel, atol=1e-5)


def test_embedding_starts_from_glove_and_words_training_never_saw_keep_their_vectors(twins):
    """The vocabulary holds the training texts' 2000 tokens and GloVe's 20000 most frequent words;
    a word no training text holds got no gradient, so it serves with its GloVe vector as shipped."""
    from nlpapps.data import vectors

    model, _ = twins
    vocabulary = [str(w) for w in next(x for x in model.layers if hasattr(x, "get_vocabulary")).get_vocabulary()]
    assert 20000 < len(vocabulary) <= 2000 + 20000
    training_words = {w for r in shipped_rows() for w in re.findall(r"[\w']+", r["text"].lower())}
    words, glove = vectors.load("glove-100")
    unseen = [w for w in words[:20000] if w.isalpha() and w not in training_words][:50]
    assert len(unseen) == 50 and all(w in vocabulary for w in unseen)
    embedding = model.get_layer("sentiment").get_layer("embedding").get_weights()[0]
    assert embedding.shape == (len(vocabulary), 100)
    for w in unseen:
        np.testing.assert_array_equal(embedding[vocabulary.index(w)], glove[words.index(w)])


def test_lexicon_prior_is_vader_valence_per_token(twins):
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    model, _ = twins
    vocabulary = [str(w) for w in next(x for x in model.layers if hasattr(x, "get_vocabulary")).get_vocabulary()]
    prior = model.get_layer("sentiment").get_layer("prior").get_weights()[0][:, 0]
    lexicon = SentimentIntensityAnalyzer().lexicon
    for word in ("good", "terrible", "love", "the"):
        assert prior[vocabulary.index(word)] == pytest.approx(lexicon.get(word, 0.0) / 4)
    assert prior[vocabulary.index("terrible")] < 0 < prior[vocabulary.index("good")]


def test_lexicon_rules_in_the_export_follow_vader_on_the_shipped_snippets(twins):
    """The exported model's lexicon score (its "rules" layer, on the export's own token ids) follows
    vaderSentiment's compound score on real snippets, and flips with a negation as VADER does."""
    import tensorflow as tf

    from nlpapps.tasks.sentiment import lexicon

    model, _ = twins
    vectorizer = next(x for x in model.layers if hasattr(x, "get_vocabulary"))
    rules = model.get_layer("sentiment").get_layer("rules")
    rows = [r for r in shipped_rows() if r["domain"] == "tweet"][:400]
    texts = [r["text"] for r in rows] + ["The film is good.", "The film is not good.", "Good, but awful!"]
    ours = rules(vectorizer(tf.constant(texts))).numpy()[:, 0]
    theirs = lexicon.compound(texts)
    assert np.corrcoef(ours[:-3], theirs[:-3])[0, 1] > 0.85
    good, not_good, but = ours[-3:]
    assert good == pytest.approx(theirs[-3], abs=1e-3) and not_good == pytest.approx(theirs[-2], abs=1e-3)
    assert not_good < 0 < good and but < 0


# ------------------------------------------------------------------- second run: label-only data


def test_second_run_is_version_2_and_leaves_version_1_intact(label_only_run, sentiment_export, models_root):
    path, before = label_only_run
    assert path == models_root / "sentiment" / "2"
    assert (path / "saved_model.pb").is_file() and (path / "metadata.json").is_file()
    assert sorted(p.name for p in (models_root / "sentiment").iterdir() if p.name.isdigit()) == ["1", "2"]
    assert tree_digest(sentiment_export) == before


def test_label_only_metadata(label_only_run, label_only_csv):
    meta = json.loads((label_only_run[0] / "metadata.json").read_text())
    assert meta["classes"] == ["neg", "pos"]
    assert meta["data"]["scored"] is False
    assert meta["data"]["source"] == str(label_only_csv)
    assert sum(meta["data"]["sizes"].values()) == 80
    assert [r["group"] for r in meta["metrics"]["test"]] == ["all"]  # no domain column


def test_label_only_score_is_probability_of_pos(label_only_run, tmp_path):
    texts = [POSITIVE, NEGATIVE, "", "An utterly forgettable sequel."]
    out = serve_in_fresh_process(label_only_run[0], texts, cwd=tmp_path)["outputs"]
    assert out["classes"] == ["neg", "pos"]
    assert set(out["label"]) <= {"neg", "pos"}
    probabilities = np.array(out["probabilities"])
    np.testing.assert_allclose(out["score"], probabilities[:, 1], atol=1e-6)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
