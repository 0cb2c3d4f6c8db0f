"""Serving compiled by XLA on length-bucketed chunks gives the Keras model's numbers: every batch
size and text length, in a process that imports only TensorFlow; padding to a bucket edge changes
nothing; `export.by_length` gives every row its own result, in order, from a bounded set of shapes;
`export.compiled` with weights computes with their values as they were when it was made."""

import json

import numpy as np
import pytest
from conftest import TF_ONLY, last_json_line, shipped_rows

from nlpapps import export
from nlpapps.data import text

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

# Batch sizes that meet every chunk size (1, 8, 32) and a batch cut into several chunks.
BATCHES = (1, 1, 3, 8, 9, 40)

SERVE_SCRIPT = (
    TF_ONLY
    + r"""
import tensorflow as tf
texts = json.load(open(sys.argv[2]))
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
out, start = {}, 0
for size in json.loads(sys.argv[3]):
    result = serve(text=tf.constant(texts[start : start + size]))
    for k in ("probabilities", "score"):
        if k in result:
            out.setdefault(k, []).extend(result[k].numpy().tolist())
    start += size
print(json.dumps(out))
"""
)


def texts_for_serving():
    """Real snippets of many lengths, an empty text, accents and emoji, and a text past max_tokens."""
    rows = shipped_rows(200)
    texts = [r["text"] for r in rows[: sum(BATCHES) - 3]]
    long = " ".join(r["text"] for r in rows[100:140])
    return [texts[0], "", *texts[1:], "ÉTÉ 😀 Not bad!", long]


def served_in_tensorflow_only_process(path, texts, tmp_path):
    file = tmp_path / "texts.json"
    file.write_text(json.dumps(texts))
    return last_json_line(SERVE_SCRIPT, path, file, json.dumps(list(BATCHES)), cwd=tmp_path)


def keras_outputs(path, texts):
    import tensorflow as tf

    model = export.load_keras(path)
    out = model(tf.constant([[t] for t in texts]), training=False)
    return out if isinstance(out, dict) else {"probabilities": out}


def test_sentiment_export_equals_the_keras_model(sentiment_export, tmp_path):
    texts = texts_for_serving()
    served = served_in_tensorflow_only_process(sentiment_export, texts, tmp_path)
    expected = keras_outputs(sentiment_export, texts)
    scale = export.metadata(sentiment_export)["data"]["score_scale"]
    assert len(served["probabilities"]) == len(texts) == sum(BATCHES)
    np.testing.assert_allclose(served["probabilities"], np.asarray(expected["polarity"]), atol=1e-5)
    np.testing.assert_allclose(served["score"], np.asarray(expected["score"])[:, 0] * scale, atol=1e-5)


def test_classify_export_equals_the_keras_model(spam_export, tmp_path):
    texts = texts_for_serving()
    served = served_in_tensorflow_only_process(spam_export, texts, tmp_path)
    expected = keras_outputs(spam_export, texts)
    np.testing.assert_allclose(served["probabilities"], np.asarray(expected["probabilities"]), atol=1e-5)


def test_padding_to_a_bucket_edge_changes_nothing(sentiment_export):
    """The padding mask keeps padded steps out of the recurrent loop and the pooling."""
    import keras
    import tensorflow as tf

    end_to_end = export.load_keras(sentiment_export)
    model = next(layer for layer in end_to_end.layers if isinstance(layer, keras.Model))
    vectorizer = next(layer for layer in end_to_end.layers if isinstance(layer, keras.layers.TextVectorization))
    ids = vectorizer(tf.constant([r["text"] for r in shipped_rows(16)]))[:, :100]
    plain = model(ids, training=False)
    for edge in text.serving_edges(100):
        if edge >= ids.shape[1]:
            padded = model(tf.pad(ids, [[0, 0], [0, edge - ids.shape[1]]]), training=False)
            for k in plain:
                np.testing.assert_allclose(plain[k], padded[k], atol=1e-6)


@pytest.mark.parametrize("batch", [0, 1, 5, 8, 33, 70])
def test_by_length_gives_each_row_its_own_result_in_order(batch):
    import tensorflow as tf

    rng = np.random.default_rng(batch)
    lengths = rng.integers(0, 30, batch)
    ids = np.zeros((batch, 30), np.int32)
    for row, n in enumerate(lengths):
        ids[row, :n] = rng.integers(1, 50, n)
    edges = text.serving_edges(30)

    def numeric(x):  # each row's sum, and the width it was padded to
        return {"sum": tf.reduce_sum(x, axis=1), "width": tf.fill([tf.shape(x)[0]], tf.shape(x)[1])}

    compiled = export.compiled(numeric)
    out = tf.function(lambda x: export.by_length(compiled, x, edges))(tf.constant(ids))
    np.testing.assert_array_equal(out["sum"].numpy(), ids.sum(axis=1))
    widths = out["width"].numpy()
    assert len(widths) == batch
    assert set(widths) <= set(edges) and (widths >= np.maximum(lengths, 1)).all()
    # Rows sorted by length share chunks, each padded to one width: no more widths than chunks.
    rows = next((r for r in export.CHUNK_ROWS if r >= batch), export.CHUNK_ROWS[-1])
    assert len(set(widths)) <= -(-batch // rows)


def test_compiled_with_weights_computes_with_their_values_when_compiled():
    import keras
    import tensorflow as tf

    dense = keras.layers.Dense(3)
    x = tf.constant(np.arange(8, dtype="float32").reshape(2, 4))
    before = dense(x).numpy()
    frozen, live = export.compiled(dense, dense.weights), export.compiled(dense)
    np.testing.assert_allclose(frozen(x), before, atol=1e-5)
    dense.kernel.assign(dense.kernel * 2.0)  # the export's numbers must not follow later changes
    np.testing.assert_allclose(frozen(x), before, atol=1e-5)
    np.testing.assert_allclose(live(x), dense(x), atol=1e-5)
    assert not np.allclose(live(x), before)
