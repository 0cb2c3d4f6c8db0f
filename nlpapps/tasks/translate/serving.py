"""The exported functions (text in, translation and score out), which evaluation, the command line
and the SavedModel all call; choosing one for a beam width; drawing attention weights."""

from pathlib import Path

import numpy as np
import tensorflow as tf

from nlpapps import decoding, evaluation
from nlpapps.data import text
from nlpapps.errors import UserError
from nlpapps.tasks.translate import wordpiece

TEXT = tf.TensorSpec([None], tf.string, name="text")


def signatures(translator, tokenizers, recipe):
    """The exported functions: text in, translation and score out. The same tf.functions are what
    evaluation calls, so the evaluated and the exported model cannot disagree."""
    decode = decoder(translator, tokenizers, recipe)
    width = recipe["decode"]["beam_width"]

    def readable(tokens):  # padding, the specials and the end are written as nothing
        return tokenizers["target"].detokenize(tokens, tokens > wordpiece.END)

    def translate(width):
        def run(text_in):
            _, tokens, scores = decode(text_in, width)
            return {"translation": readable(tokens), "score": scores}

        return run

    functions = {
        "serving_default": (tf.function(translate(width), input_signature=[TEXT]), [TEXT]),
        "translate_greedy": (tf.function(translate(1), input_signature=[TEXT]), [TEXT]),
    }
    width_spec = tf.TensorSpec([], tf.int32, name="beam_width")
    beam = tf.function(lambda text_in, beam_width: translate(beam_width)(text_in), input_signature=[TEXT, width_spec])
    functions["translate_beam"] = (beam, [TEXT, width_spec])
    if translator.forced is None:
        return functions

    def attention(text_in):
        """serving_default's translation, and the attention weights[batch, output, source] of each
        output piece (the end included) over the source pieces."""
        ids, tokens, scores = decode(text_in, width)
        tokens = tf.pad(tokens, [[0, 0], [0, tf.maximum(0, 1 - tf.shape(tokens)[1])]])
        previous = tf.concat([tf.fill([tf.shape(tokens)[0], 1], translator.start_id), tokens[:, :-1]], axis=1)
        _, weights = translator.forced([ids, previous], training=False)
        weights *= tf.cast(tokens > 0, tf.float32)[:, :, None]
        return {
            "translation": readable(tokens),
            "score": scores,
            "weights": weights,
            "source_tokens": tf.where(ids > 0, tf.gather(tokenizers["source"].pieces, ids), ""),
            "output_tokens": tf.where(tokens > 0, tf.gather(tokenizers["target"].pieces, tokens), ""),
        }

    functions["attention"] = (tf.function(attention, input_signature=[TEXT]), [TEXT])
    return functions


def decoder(translator, tokenizers, recipe):
    """texts, beam width → (source piece ids, output piece ids, scores): greedy for the width 1,
    beam search otherwise, with the recipe's [decode] settings."""
    dd = recipe["decode"]
    serving_ids = text.ServingIds(recipe["text"]["max_tokens"], name="serving_ids")
    search = {
        "start_id": translator.start_id,
        "end_id": translator.end_id,
        "length_penalty": dd["length_penalty"],
        "banned": (wordpiece.PAD, wordpiece.UNK, wordpiece.START),
        "no_repeat_ngram": dd["no_repeat_ngram"],
    }

    def decode(texts, width):
        ids = serving_ids(tokenizers["source"](texts).to_tensor())
        lengths = tf.reduce_sum(tf.cast(ids > 0, tf.float32), axis=1)
        # An empty input gets an empty output; the rest at most factor × length + extra pieces.
        caps = tf.where(lengths > 0, tf.cast(dd["max_length_factor"] * lengths, tf.int32) + dd["max_length_extra"], 0)
        states, context = translator.encode(ids)
        if isinstance(width, int) and width == 1:
            tokens, scores = decoding.greedy(translator.step, states, context, max_lengths=caps, **search)
        else:
            tokens, scores = decoding.beam_search(
                translator.step, states, context, max_lengths=caps, width=tf.maximum(width, 1), **search
            )
        return ids, tokens, scores

    return decode


def restore(path, **changes):
    """(translator, tokenizers, recipe sections) of an export: its Keras twin's weights in a new
    Translator, its vocabularies; `changes` ({"decode.no_repeat_ngram": 0, ...}) alter its recipe."""
    from nlpapps import export
    from nlpapps.tasks.translate.model import Translator

    meta = export.metadata(path, "translate")
    recipe = {}
    for key, value in {**meta["recipe"], **changes}.items():
        section, name = key.split(".", 1)
        recipe.setdefault(section, {})[name] = value
    tokenizers = {
        k: wordpiece.WordPiece((Path(path) / f"{k}_vocab.txt").read_text(encoding="utf-8").splitlines())
        for k in ("source", "target")
    }
    sizes = [tokenizers[k].vocabulary_size() for k in ("source", "target")]
    translator = Translator(*sizes, recipe["model"])
    translator.model.set_weights(export.load_keras(path).get_weights())
    return translator, tokenizers, recipe


def translate_all(function, texts, batch_size=64):
    """Translations of `texts` (str) by an exported-style function, in length-sorted batches."""
    order = np.argsort([len(t) for t in texts], kind="stable")
    out = np.empty(len(texts), dtype=object)
    for i in range(0, len(order), batch_size):
        chosen = order[i : i + batch_size]
        result = function(tf.constant([texts[j] for j in chosen]))
        out[chosen] = [s.decode("utf-8") for s in result["translation"].numpy()]
    return out


def show_attention(outputs, index, path):
    """A heatmap of one translation's attention weights: output pieces down, source pieces across."""
    source = [s.decode("utf-8", "replace") for s in outputs["source_tokens"][index] if s]
    target = [s.decode("utf-8", "replace") for s in outputs["output_tokens"][index] if s]
    weights = outputs["weights"][index][: len(target), : len(source)]
    title = f"{_joined(source)} → {_joined(target)}"
    return evaluation.plot_attention(weights, source, target, path, title=title)


def _joined(pieces):
    """Pieces read as text for a title: a '##' piece continues the word before it."""
    return " ".join(pieces).replace(" ##", "")


def chooser(loaded, beam, attention):
    """The function of a loaded export that translates a batch of texts as asked: with attention
    weights, with the exported beam width (beam None), greedy (1) or another beam width. Its outputs
    are numpy arrays. Refuses attention from a model trained without it."""
    signatures = loaded.signatures
    if attention and "attention" not in signatures:
        raise UserError("the model has no attention to show (it was trained with model.attention = none)")
    if attention:
        call = signatures["attention"]
    elif beam is None:
        call = signatures["serving_default"]
    elif beam == 1:
        call = signatures["translate_greedy"]
    else:
        width = tf.constant(beam)
        return lambda batch: _numpy(signatures["translate_beam"](text=batch, beam_width=width))
    return lambda batch: _numpy(call(text=batch))


def _numpy(outputs):
    return {k: v.numpy() for k, v in outputs.items()}
