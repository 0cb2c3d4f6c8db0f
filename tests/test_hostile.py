"""Hostile input, as property tests: every exported text signature (sentiment's, classify's) and
the CLI's `predict -` stdin path take any bytes (arbitrary unicode, control characters, empty
strings, 100,000-character strings, invalid UTF-8) in batches of any size, and answer every text
with finite outputs, never a crash. Derandomized, so CI sees the same examples every run."""

import json

import numpy as np
import pytest
from conftest import invoke
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

PROPERTY = settings(
    max_examples=200,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

unicode_text = st.text(st.characters(codec="utf-8"), max_size=40)  # any code point, controls included
controls = st.text(
    st.characters(min_codepoint=0, max_codepoint=0x1F) | st.sampled_from("\x7f\x85\u2028\ufeff"), max_size=20
)
huge = st.builds(lambda piece, n: (piece * n)[:100_000], st.text(min_size=1, max_size=8), st.just(100_000))
one_text = st.one_of(
    unicode_text.map(lambda s: s.encode("utf-8")),
    controls.map(lambda s: s.encode("utf-8")),
    st.just(b""),
    st.binary(max_size=40),  # mostly invalid UTF-8
    huge.map(lambda s: s.encode("utf-8")),
)
batches = st.lists(one_text, min_size=0, max_size=6)


@pytest.fixture(scope="module")
def signatures(sentiment_export, spam_export):
    import tensorflow as tf

    return {
        name: tf.saved_model.load(str(path)).signatures["serving_default"]
        for name, path in (("sentiment", sentiment_export), ("classify", spam_export))
    }


def check_outputs(out, n):
    """One finite answer per text, in every output."""
    probabilities = out["probabilities"].numpy()
    assert probabilities.shape == (n, len(out["classes"].numpy()))
    assert np.isfinite(probabilities).all()
    if n:
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
    assert out["label"].numpy().shape == (n,)
    if "score" in out:
        score = out["score"].numpy()
        assert score.shape == (n,) and np.isfinite(score).all()


def _serve(signature, texts):
    import tensorflow as tf

    return signature(text=tf.constant(texts, dtype=tf.string, shape=[len(texts)]))


@PROPERTY
@given(texts=batches)
def test_sentiment_signature_answers_any_bytes(signatures, texts):
    check_outputs(_serve(signatures["sentiment"], texts), len(texts))


@PROPERTY
@given(texts=batches)
def test_classify_signature_answers_any_bytes(signatures, texts):
    check_outputs(_serve(signatures["classify"], texts), len(texts))


@pytest.mark.parametrize("task", ["sentiment", "classify"])
@pytest.mark.parametrize("size", [0, 1, 5000])
def test_batches_of_0_1_and_5000(signatures, task, size):
    mix = [b"", b"\xff\xfe\x00", "\u202e\x00\x1b[31m".encode(), b"fine", "ça va 😀".encode()]
    texts = [mix[i % len(mix)] for i in range(size)]
    if size:
        texts[-1] = ("word " * 20_000).encode()  # and one of 100,000 characters
    check_outputs(_serve(signatures[task], texts), size)


@settings(
    max_examples=8,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(lines=st.lists(one_text.map(lambda b: b.replace(b"\n", b" ")), min_size=0, max_size=25))
def test_predict_stdin_answers_every_line(sentiment_export, lines):
    """Each example loads the export in a fresh CLI call (seconds, and a compilation for each new
    batch shape), hence few examples here, of up to 25 lines each (the empty input among them)."""
    stdin = b"".join(line + b"\n" for line in lines)
    result = invoke(["predict", "sentiment", "--model", sentiment_export, "--json", "-"], input=stdin)
    assert result.exit_code == 0, (result.output, result.exception)
    rows = [json.loads(x) for x in result.stdout.split("\n") if x]
    assert len(rows) == len(lines)
    for row in rows:
        assert row["label"] in ("negative", "neutral", "positive") and np.isfinite(row["score"])
