"""What the many-to-one text tasks (sentiment, classify) share: reading texts with a target column,
the text encoder, fitting, and the export of a text-in, named-outputs-out SavedModel."""

import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from nlpapps import evaluation, export, training
from nlpapps.blocks import recurrent_stack
from nlpapps.data import sources, text
from nlpapps.errors import UserError


def prepare(recipe, log):
    """Splits with 'text', 'target' (and 'domain' where present), the fitted vectorizer, every
    split's token ids, and how many rows were skipped: empty texts per split, and 'bad_rows' (rows
    that did not fit their columns)."""
    d = recipe["data"]
    notes = {}
    splits = sources.load(
        d["source"],
        {"text": d["text"], "target": d["label"], "domain": d.get("domain", "")},
        optional=("domain",),
        fractions=tuple(d["split"]),
        seed=d["seed"],
        max_bad_rows=d["max_bad_rows"],
        log=log,
        notes=notes,
    )
    dropped = {"bad_rows": notes.get("skipped_bad_rows", 0)}
    text.require_text(splits["train"]["text"], d["text"])
    for name, columns in splits.items():
        keys = list(columns)
        kept, dropped[name] = text.drop_empty(*(columns[k] for k in keys))
        splits[name] = dict(zip(keys, kept))
    vectorizer, ids = _vectorize(splits, recipe["text"], dropped)
    empty = {k: dropped[k] for k in splits}
    if sum(empty.values()):
        log(f"skipped {sum(empty.values())} empty texts ({', '.join(f'{k} {v}' for k, v in empty.items())})")
    for name in ("train", "validation", "test"):
        if not len(splits[name]["text"]):
            raise UserError(f"{d['source']}: the {name} split is empty; the data has too few rows")
    log(
        f"data: {d['source']}: "
        + ", ".join(f"{k} {len(v['text'])}" for k, v in splits.items())
        + f"; vocabulary {vectorizer.vocabulary_size()}, texts cut to {recipe['text']['max_tokens']} tokens"
    )
    return splits, vectorizer, ids, dropped


def _vectorize(splits, settings, dropped):
    """The vectorizer fitted on the training texts, and every split's ragged token ids. Texts left
    with no token at all (only punctuation) are dropped too and counted in `dropped`."""
    vectorizer = text.fit_vectorizer(splits["train"]["text"], settings["vocab_size"], settings["ngrams"])
    ids = {}
    for name, columns in splits.items():
        ragged = text.token_ids(vectorizer, columns["text"], settings["max_tokens"])
        keep = ragged.row_lengths().numpy() > 0
        splits[name] = {k: v[keep] for k, v in columns.items()}
        ids[name] = tf.ragged.boolean_mask(ragged, keep)
        dropped[name] += int((~keep).sum())
    return vectorizer, ids


def encoder(vocab_size, m):
    """Token ids → embedding → shared recurrent block → one vector per text."""
    ids = keras.Input((None,), dtype="int32", name="token_ids")
    x = keras.layers.Embedding(vocab_size, m["embedding_dim"], mask_zero=True, name="embedding")(ids)
    # Dropping whole word vectors keeps a small corpus from being memorised word by word.
    x = keras.layers.SpatialDropout1D(m["embedding_dropout"], name="embedding_dropout")(x)
    x = recurrent_stack(
        cell=m["cell"],
        units=m["units"],
        depth=m["depth"],
        bidirectional=m["bidirectional"],
        dropout=m["dropout"],
        residual=m["residual"],
        pooling=m["pooling"],
        name="encoder",
    )(x)
    return ids, x


def fit(model, ids, targets, recipe, output_root, monitor="val_loss", mode="min", class_weight=None):
    """Fit on bucketed batches, `class_weight` forwarded to Keras; returns (history, seconds)."""
    t = recipe["train"]

    def train(epoch):  # each epoch's order from (seed, epoch): a resumed run sees the same batches
        return text.pipeline(
            ids["train"], targets["train"], batch_size=t["batch_size"], shuffle=True, seed=t["seed"], epoch=epoch
        )

    validation = text.pipeline(
        ids["validation"], targets["validation"], batch_size=t["batch_size"], shuffle=False, seed=t["seed"]
    )
    start = time.perf_counter()
    history = training.fit(
        model,
        train,
        validation,
        t,
        training.run_dir(output_root, recipe),
        monitor=monitor,
        mode=mode,
        class_weight=class_weight,
    )
    return history, time.perf_counter() - start


def predict(model, ids, batch_size=256):
    """Model outputs for ragged ids, batched by length like training."""
    order = np.argsort(ids.row_lengths().numpy(), kind="stable")
    out = [
        model(tf.gather(ids, order[i : i + batch_size]).to_tensor(), training=False)
        for i in range(0, len(order), batch_size)
    ]
    joined = {k: np.concatenate([np.asarray(o[k]) for o in out]) for k in out[0]}
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return {k: v[inverse] for k, v in joined.items()}


def classes_of(splits, ids, origin, log):
    """The label set seen in training. Validation/test rows whose label training never saw cannot
    be learned or scored: they are dropped and counted. Adds integer 'y' to every split."""
    classes = sorted(set(splits["train"]["label"]))
    if len(classes) < 2:
        raise UserError(f"{origin}: the label column has one class only ({str(classes[0])!r}); need two or more")
    index = {c: i for i, c in enumerate(classes)}
    for name, columns in splits.items():
        known = np.array([c in index for c in columns["label"]], dtype=bool)
        if not known.all():
            log(f"{name}: dropped {int((~known).sum())} rows whose label is not in the training split")
            splits[name] = columns = {k: v[known] for k, v in columns.items()}
            ids[name] = tf.ragged.boolean_mask(ids[name], known)
        columns["y"] = np.array([index[c] for c in columns["label"]], dtype="int32")
    return classes


def recipe_as_read(recipe):
    """The recipe's settings, with the columns a folder source really reads in place of the recipe's."""
    flat = recipe.flat()
    d = recipe["data"]
    if Path(d["source"]).is_dir():
        read = sources.folder_columns(
            {"text": d["text"], "label": d["label"], "domain": d.get("domain", "")}, optional=("domain",)
        )
        flat.update(
            {
                f"data.{k}": {"text": "(the .txt files)", "label": "(the class sub-folders)"}.get(v, v)
                for k, v in read.items()
                if f"data.{k}" in flat
            }
        )
    return flat


def save(recipe, output_root, model, vectorizer, classes, outputs, metadata, extras):
    """Export: `text: string[batch]` → the named outputs that `outputs(model outputs)` builds."""
    class_names = tf.constant(classes)
    # One text-to-ids path for the SavedModel and the Keras model alike.
    raw = keras.Input((1,), dtype="string", name="text")
    ids = text.ServingIds(recipe["text"]["max_tokens"], name="serving_ids")
    end_to_end = keras.Model(raw, model(ids(vectorizer(raw))), name=f"{recipe.task}_end_to_end")

    def serve(text_in):
        result = model(ids(vectorizer(text_in)), training=False)
        probabilities = result[next(iter(result))] if isinstance(result, dict) else result
        # The task's own outputs come last: a task may give its label another meaning than the argmax.
        return {
            "label": tf.gather(class_names, tf.argmax(probabilities, axis=-1)),
            "probabilities": probabilities,
            "classes": class_names,
            **outputs(result),
        }

    return export.save(
        output_root,
        recipe,
        endpoints={"serving_default": (serve, [tf.TensorSpec([None], tf.string, name="text")])},
        track=[model, vectorizer],
        keras_model=end_to_end,
        metadata={"recipe": recipe_as_read(recipe), "classes": list(classes), **metadata},
        extras=[("training_curves.png", lambda p: evaluation.plot_history(metadata["history"], p)), *extras],
    )
