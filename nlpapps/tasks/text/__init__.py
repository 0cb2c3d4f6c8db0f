"""What the many-to-one text tasks (sentiment, classify) share, one module per role: `data` (the
streamed source, vectorizer, pipelines, label set), `model` (the text encoder), `fit` (training and
test predictions) and `serving` (the text-in SavedModel)."""
