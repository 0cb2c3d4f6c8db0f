"""The VADER lexicon (vaderSentiment, Hutto & Gilbert 2014, MIT): its analyzer is a baseline in the
run's table, and its word valences are a prior the model reads beside each word's embedding."""

import functools

import numpy as np

VALENCE_RANGE = 4.0  # VADER rates words from -4 (most negative) to +4 (most positive)


@functools.cache
def analyzer():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def compound(texts):
    """VADER's compound score of each text, on -1 … 1 (0: no rated word, or they cancel out)."""
    scores = analyzer().polarity_scores
    return np.array([scores(t)["compound"] for t in texts], dtype=float)


def valences(vocabulary):
    """Each vocabulary token's VADER valence on -1 … 1, 0 for a token the lexicon does not rate."""
    lexicon = analyzer().lexicon
    return np.array([lexicon.get(token, 0.0) / VALENCE_RANGE for token in vocabulary], dtype=np.float32)
