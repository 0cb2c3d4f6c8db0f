"""Pretrained word vectors shipped with the package: GloVe 6B 100d for GloVe's 50,000 most frequent
words and the further words the VADER lexicon rates, in float16 (see shipped/PROVENANCE.md)."""

import functools

import numpy as np

from nlpapps.data import sources

SHIPPED = {"glove-100": "glove_6b_100d.npz"}  # recipe name -> file in data/shipped


@functools.cache
def load(name):
    """(words in the vectors' frequency order, float32 vectors [words, dim]) of the vectors `name`."""
    with np.load(sources.SHIPPED / SHIPPED[name]) as z:
        return [str(w) for w in z["words"]], z["vectors"].astype(np.float32)


def frequent(name, count):
    """The `count` most frequent words of the vectors `name`."""
    return load(name)[0][:count]


def matrix(name, vocabulary, seed):
    """An embedding matrix for `vocabulary` (index 0 the padding, left zero): the vectors' row for
    each word they hold, random (normal, the vectors' own spread) for the others. Returns (matrix,
    how many vocabulary words the vectors hold)."""
    words, vectors = load(name)
    row = {w: i for i, w in enumerate(words)}
    rng = np.random.default_rng(seed)
    out = rng.normal(0.0, vectors.std(axis=0), (len(vocabulary), vectors.shape[1])).astype(np.float32)
    out[0] = 0.0
    found = [(i, row[w]) for i, w in enumerate(vocabulary) if i and w in row]
    if found:
        at, of = np.array(found).T
        out[at] = vectors[of]
    return out, len(found)
