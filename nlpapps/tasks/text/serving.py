"""The export of a many-to-one text task: `text: string[batch]` in, named outputs out, with the
vocabulary and standardization inside the SavedModel (core TensorFlow ops only)."""

from pathlib import Path

import keras
import tensorflow as tf

from nlpapps import evaluation, export
from nlpapps.data import sources, text


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


def serving(model, vectorizer, classes, outputs, max_tokens):
    """The exported function: `text: string[batch]` → label, probabilities, classes, and the named
    outputs that `outputs(model outputs)` builds. The model runs compiled, on length-bucketed chunks."""
    class_names = tf.constant(classes)
    numeric = export.compiled(lambda token_ids: model(token_ids, training=False), model.weights)
    edges = text.serving_edges(max_tokens)
    no_words = text.NoWords(name="no_words")

    def serve(text_in):
        ids = vectorizer(text_in)[:, :max_tokens]
        result = no_words([ids, export.by_length(numeric, ids, edges)])
        probabilities = result[next(iter(result))] if isinstance(result, dict) else result
        # The task's own outputs come last: a task may give its label another meaning than the argmax.
        return {
            "label": tf.gather(class_names, tf.argmax(probabilities, axis=-1)),
            "probabilities": probabilities,
            "classes": class_names,
            **outputs(result),
        }

    return serve


def save(recipe, output_root, model, vectorizer, classes, outputs, metadata, extras):
    """Export: `text: string[batch]` → the named outputs of `serving`; the .keras twin takes the
    same strings through the same vectorizer."""
    max_tokens = recipe["text"]["max_tokens"]
    raw = keras.Input((1,), dtype="string", name="text")
    ids = text.ServingIds(max_tokens, name="serving_ids")
    token_ids = ids(vectorizer(raw))
    outputs_of = text.NoWords(name="no_words")([token_ids, model(token_ids)])
    end_to_end = keras.Model(raw, outputs_of, name=f"{recipe.task}_end_to_end")
    serve = serving(model, vectorizer, classes, outputs, max_tokens)
    return export.save(
        output_root,
        recipe,
        endpoints={"serving_default": (serve, [tf.TensorSpec([None], tf.string, name="text")])},
        track=[model, vectorizer],
        keras_model=end_to_end,
        metadata={"recipe": recipe_as_read(recipe), "classes": list(classes), **metadata},
        extras=[("training_curves.png", lambda p: evaluation.plot_history(metadata["history"], p)), *extras],
    )
