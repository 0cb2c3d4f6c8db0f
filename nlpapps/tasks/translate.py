"""Translation (many-to-many with delay): an encoder reads the whole source sentence, then a decoder
writes the translation one word at a time, attending to the encoder's outputs.

Encoder: embedding → the shared recurrent stack (bidirectional, stacked). Decoder: embedding → the
shared stack (one way), started from the encoder's final states (projected where the widths
differ) → attention over the encoder outputs (additive, dot, or none) → a softmax over the target
words. Training is teacher-forced: the decoder reads the reference shifted by one, padding masked
out of the loss and the token accuracy. Translating runs the decoder one step at a time inside the
graph (nlpapps.decoding: greedy and beam search), so evaluation, the CLI and the export agree.

Target ids: 0 padding, 1 out-of-vocabulary, 2… words, then two ids past the vocabulary for the start
and end of a sentence. Outputs are lower-cased (text.standardize_words), so BLEU and chrF are
reported case-insensitively.
"""

import time

import keras
import numpy as np
import tensorflow as tf

from nlpapps import decoding, evaluation, export, training
from nlpapps.blocks import Attention, recurrent_stack
from nlpapps.data import stream, text
from nlpapps.errors import UserError

NAME = "translate"
TEXT = tf.TensorSpec([None], tf.string, name="text")


# ------------------------------------------------------------------------------------------- data


def prepare(recipe, log):
    """The pairs as a stream (`stream.Source`, split by a seeded hash of the source text), one pass
    over them (rows that do not fit, pairs with a blank side, pairs over the length limits, a sample
    of training pairs) and the two vectorizers fitted on that sample, as a `Pairs`."""
    d, t = recipe["data"], recipe["text"]
    source = stream.Source(
        d["source"],
        {"source": d["source_column"], "target": d["target_column"]},
        texts=("source", "target"),
        max_words={"source": d["max_source_words"], "target": d["max_target_words"]},
        fractions=tuple(d["split"]),
        seed=d["seed"],
    )
    start = time.perf_counter()
    profile = source.profile(t["vocab_sample_rows"], d["max_bad_rows"], log)
    seconds = time.perf_counter() - start
    skipped = {"blank": sum(profile.empty), "too_long": sum(profile.too_long)}
    for name, size in zip(stream.SPLITS, profile.sizes):
        if not size:
            raise UserError(
                f"{d['source']}: the {name} split has no pair within the length limits; "
                f"the data has too few rows ({skipped['blank']} blank, {skipped['too_long']} too long)"
            )
    vectorizers = {
        k: text.fit_vectorizer(profile.samples[k], t[f"{k}_vocab"], standardize=text.standardize_words)
        for k in ("source", "target")
    }
    log(
        f"data: {d['source']} ({d['source_column']} → {d['target_column']}): "
        + ", ".join(f"{k} {v}" for k, v in zip(stream.SPLITS, profile.sizes))
        + f" pairs ({profile.rows} rows read in {seconds:.1f} s, {profile.rows / max(seconds, 1e-9):,.0f} rows/s)"
        + f"; skipped {skipped['blank']} with a blank side, {skipped['too_long']} over "
        f"{d['max_source_words']} source / {d['max_target_words']} target words; vocabularies "
        f"{vectorizers['source'].vocabulary_size()} source, {vectorizers['target'].vocabulary_size()} target"
        f" from {len(profile.sample)} training pairs"
    )
    return Pairs(source, profile, vectorizers, recipe, skipped)


class Pairs:
    """A streamed source of pairs ready to train on: `examples(split)` is a tf.data pipeline of
    teacher-forced examples, tokenized in parallel inside the pipeline; small splits (up to
    data.cache_rows pairs) are kept in memory after their first pass. `texts(split)` gives a
    split's raw pairs, read again from the source batch by batch."""

    def __init__(self, source, profile, vectorizers, recipe, skipped):
        self.source, self.profile, self.vectorizers, self.skipped = source, profile, vectorizers, skipped
        self.max_tokens, self.cache_rows = recipe["text"]["max_tokens"], recipe["data"]["cache_rows"]
        self.start_id = vectorizers["target"].vocabulary_size()  # the ids past the target words
        self.end_id = self.start_id + 1

    def size(self, split):
        return self.profile.sizes[stream.SPLITS.index(split)]

    def examples(self, split):
        vectorizers, ids = self.vectorizers, (self.start_id, self.end_id, self.max_tokens)
        index = stream.SPLITS.index(split)
        return stream.dataset(
            self.source,
            index,
            lambda columns: teacher_forcing(vectorizers, columns, *ids),
            cache=self.size(split) <= self.cache_rows,
        )

    def texts(self, split):
        """{"source": [...], "target": [...]}: the raw texts of a split's pairs, in file order."""
        pairs = {"source": [], "target": []}
        for columns in self.source.batches(stream.SPLITS.index(split)):
            for name, column in zip(self.source.names, columns):
                pairs[name].extend(column)
        return pairs


def teacher_forcing(vectorizers, pairs, start_id, end_id, max_tokens):
    """(source ids cut to `max_tokens` as serving cuts them, decoder input = start + target),
    decoder output = target + end; all ragged, of a batch of string pairs {"source", "target"}."""
    source = tf.RaggedTensor.from_tensor(vectorizers["source"](pairs["source"]), padding=0)[:, :max_tokens]
    target = tf.cast(tf.RaggedTensor.from_tensor(vectorizers["target"](pairs["target"]), padding=0), tf.int32)
    rows = target.nrows()
    start = tf.RaggedTensor.from_row_lengths(tf.fill([rows], start_id), tf.ones([rows], tf.int64))
    end = tf.RaggedTensor.from_row_lengths(tf.fill([rows], end_id), tf.ones([rows], tf.int64))
    return (tf.cast(source, tf.int32), tf.concat([start, target], axis=1)), tf.concat([target, end], axis=1)


# ------------------------------------------------------------------------------------------ model


class Translator:
    """The layers, the teacher-forced Keras model made of them (what trains, and the `.keras`
    twin), and `encode`/`step`, the same layers run one target word at a time for the search."""

    def __init__(self, source_vocab, target_vocab, m):
        self.start_id, self.end_id, classes = target_vocab, target_vocab + 1, target_vocab + 2
        self.source_embedding = keras.layers.Embedding(
            source_vocab, m["embedding_dim"], mask_zero=True, name="source_embedding"
        )
        self.encoder = recurrent_stack(
            m["cell"],
            m["units"],
            m["depth"],
            m["bidirectional"],
            m["dropout"],
            return_sequences=True,
            return_state=True,
            all_states=True,
            name="encoder",
        )
        self.target_embedding = keras.layers.Embedding(
            classes, m["embedding_dim"], mask_zero=True, name="target_embedding"
        )
        self.decoder = recurrent_stack(
            m["cell"],
            m["decoder_units"],
            m["decoder_depth"],
            False,
            m["dropout"],
            return_sequences=True,
            return_state=True,
            all_states=True,
            name="decoder",
        )
        self.encoder_depth, n = m["depth"], self.decoder.states_per_layer
        widths_differ = self.encoder.output_width != m["decoder_units"]
        self.bridges = [
            keras.layers.Dense(m["decoder_units"], activation="tanh", name=f"bridge_{i}") if widths_differ else None
            for i in range(m["decoder_depth"] * n)
        ]
        self.attention = (
            Attention(m["attention"], m["attention_units"], name="attention") if m["attention"] != "none" else None
        )
        self.concat = keras.layers.Concatenate(name="attention_concat")
        self.dropout = keras.layers.Dropout(m["dropout"], name="output_dropout")
        self.logits = keras.layers.Dense(classes, name="logits")

        source = keras.Input((None,), dtype="int32", name="source")
        target_in = keras.Input((None,), dtype="int32", name="target_in")
        values, states = self.encoder(self.source_embedding(source))
        outputs, _ = self.decoder(self.target_embedding(target_in), initial_state=self._bridge(states))
        logits, weights = self._head(outputs, values)
        self.model = keras.Model([source, target_in], logits, name="translate")
        # The same layers, also returning the attention weights of every output step.
        self.forced = keras.Model([source, target_in], [logits, weights]) if self.attention else None

    def _bridge(self, states):
        """The decoder's initial states: decoder layer k starts from encoder layer k's final states
        (the last encoder layer's when the decoder is deeper)."""
        n = self.decoder.states_per_layer
        out = []
        for i, bridge in enumerate(self.bridges):
            layer, which = divmod(i, n)
            state = states[min(layer, self.encoder_depth - 1) * n + which]
            out.append(bridge(state) if bridge is not None else state)
        return out

    def _head(self, outputs, values, values_mask=None, keys=None):
        """Decoder outputs → logits over the target words (and the attention weights)."""
        if self.attention is None:
            return self.logits(self.dropout(outputs)), None
        mask = None if values_mask is None else [None, values_mask]
        context, weights = self.attention([outputs, values], mask=mask, keys=keys)
        # The output layer reads the decoder state and the context side by side (as Bahdanau et al.
        # do). A tanh layer mixing the two first (Luong's attentional vector) kept training at the
        # unigram loss here for epochs.
        return self.logits(self.dropout(self.concat([outputs, context]))), weights

    def compile(self, learning_rate):
        # Keras masks the loss and the accuracy with the padding mask the logits carry.
        self.model.compile(
            optimizer=training.Adam(learning_rate, clipnorm=5.0),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="token_accuracy")],
            jit_compile=False,
        )

    def encode(self, ids):
        """Source ids → the decoder's initial states and the context each step attends to."""
        mask = ids != 0
        values, states = self.encoder(self.source_embedding(ids), mask=mask)
        keys = self.attention.keys(values) if self.attention else values
        return self._bridge(states), (values, keys, mask)

    def step(self, tokens, states, context):
        """One decoder step: the previous words[n] → logits[n, classes] and the new states."""
        values, keys, mask = context
        outputs, states = self.decoder(self.target_embedding(tokens[:, None]), initial_state=states)
        logits, _ = self._head(outputs, values, mask, keys)
        return logits[:, 0], states


# --------------------------------------------------------------------------------------- decoding


def signatures(translator, vectorizers, recipe):
    """The exported functions: text in, translation and score out. The same tf.functions are what
    evaluation calls, so the evaluated and the exported model cannot disagree."""
    dd, max_tokens = recipe["decode"], recipe["text"]["max_tokens"]
    target_words = vectorizers["target"].get_vocabulary()
    words = tf.constant(target_words + ["", ""])  # start and end are written as nothing
    shown = tf.constant(target_words + ["<s>", "</s>"])
    serving_ids = text.ServingIds(max_tokens, name="serving_ids")
    search = {
        "start_id": translator.start_id,
        "end_id": translator.end_id,
        "length_penalty": dd["length_penalty"],
        "banned": (0, 1, translator.start_id),
    }  # never padding, unknown or start

    def decode(texts, width):
        ids = tf.cast(serving_ids(vectorizers["source"](texts)), tf.int32)
        lengths = tf.reduce_sum(tf.cast(ids > 0, tf.float32), axis=1)
        # An empty input gets an empty output; the rest at most factor × length + extra words.
        caps = tf.where(lengths > 0, tf.cast(dd["max_length_factor"] * lengths, tf.int32) + dd["max_length_extra"], 0)
        states, context = translator.encode(ids)
        if isinstance(width, int) and width == 1:
            tokens, scores = decoding.greedy(translator.step, states, context, max_lengths=caps, **search)
        else:
            tokens, scores = decoding.beam_search(
                translator.step, states, context, max_lengths=caps, width=tf.maximum(width, 1), **search
            )
        return ids, tokens, scores

    def readable(tokens):
        keep = (tokens > 1) & (tokens < translator.start_id)
        joined = tf.strings.reduce_join(tf.ragged.boolean_mask(tf.gather(words, tokens), keep), axis=-1, separator=" ")
        return text.detokenize(joined)

    def translate(width):
        def run(text_in):
            _, tokens, scores = decode(text_in, width)
            return {"translation": readable(tokens), "score": scores}

        return run

    functions = {
        "serving_default": (tf.function(translate(dd["beam_width"]), input_signature=[TEXT]), [TEXT]),
        "translate_greedy": (tf.function(translate(1), input_signature=[TEXT]), [TEXT]),
    }
    width_spec = tf.TensorSpec([], tf.int32, name="beam_width")
    beam = tf.function(lambda text_in, beam_width: translate(beam_width)(text_in), input_signature=[TEXT, width_spec])
    functions["translate_beam"] = (beam, [TEXT, width_spec])

    if translator.forced is not None:

        def attention(text_in):
            """serving_default's translation, and the attention weights[batch, output, source] of
            each output word (the end included) over the source tokens."""
            ids, tokens, scores = decode(text_in, dd["beam_width"])
            tokens = tf.pad(tokens, [[0, 0], [0, tf.maximum(0, 1 - tf.shape(tokens)[1])]])
            previous = tf.concat([tf.fill([tf.shape(tokens)[0], 1], translator.start_id), tokens[:, :-1]], axis=1)
            _, weights = translator.forced([ids, previous], training=False)
            weights *= tf.cast(tokens > 0, tf.float32)[:, :, None]
            source_tokens = tf.strings.split(text.standardize_words(text_in))[:, :max_tokens].to_tensor("")
            return {
                "translation": readable(tokens),
                "score": scores,
                "weights": weights,
                "source_tokens": source_tokens,
                "output_tokens": tf.where(tokens > 0, tf.gather(shown, tokens), ""),
            }

        functions["attention"] = (tf.function(attention, input_signature=[TEXT]), [TEXT])
    return functions


def translate_all(function, texts, batch_size=64):
    """Translations of `texts` (str) by an exported-style function, in length-sorted batches."""
    order = np.argsort([len(t) for t in texts], kind="stable")
    out = np.empty(len(texts), dtype=object)
    for i in range(0, len(order), batch_size):
        chosen = order[i : i + batch_size]
        result = function(tf.constant([texts[j] for j in chosen]))
        out[chosen] = [s.decode("utf-8") for s in result["translation"].numpy()]
    return out


# ------------------------------------------------------------------------------------------ run


def run(recipe, output_root, log=print):
    d, m, t, dd = recipe["data"], recipe["model"], recipe["train"], recipe["decode"]
    data = prepare(recipe, log)
    vectorizers = data.vectorizers
    with training.strategy(recipe).scope():
        translator = Translator(vectorizers["source"].vocabulary_size(), vectorizers["target"].vocabulary_size(), m)
        translator.compile(t["learning_rate"])
    examples = {k: data.examples(k) for k in stream.SPLITS}
    batches = {
        k: text.batches(examples[k], batch_size=t["batch_size"], shuffle=0, seed=t["seed"], max_length=data.max_tokens)
        for k in ("validation", "test")
    }
    shuffle = min(t["shuffle_buffer"], data.size("train"))

    def train(epoch):  # each epoch's order from (seed, epoch): a resumed run sees the same batches
        ds = text.batches(
            examples["train"],
            batch_size=t["batch_size"],
            shuffle=shuffle,
            seed=t["seed"],
            max_length=data.max_tokens,
            epoch=epoch,
        )
        return ds.take(t["steps_per_epoch"]) if t["steps_per_epoch"] else ds

    log(f"unigram level of the loss: {unigram_loss(data):.2f} (a model stuck there learns nothing)")
    start = time.perf_counter()
    history = training.fit(translator.model, train, batches["validation"], t, training.run_dir(output_root, recipe))
    seconds = time.perf_counter() - start

    functions = signatures(translator, vectorizers, recipe)
    test = data.texts("test")
    scores = training.evaluate(translator.model, batches["test"])
    token_accuracy = float(scores["token_accuracy"])
    start = time.perf_counter()
    systems = {
        "greedy": translate_all(functions["translate_greedy"][0], list(test["source"])),
        f"beam {dd['beam_width']}": translate_all(functions["serving_default"][0], list(test["source"])),
        "copy the source": test["source"],
    }
    decode_seconds = time.perf_counter() - start
    rows = [
        {"system": name, "sentences": len(test["source"]), **evaluation.translation_scores(hypotheses, test["target"])}
        for name, hypotheses in systems.items()
    ]
    best = rows[1]
    log(
        f"\ntest split: {len(test['source'])} pairs never used in training; BLEU and chrF (sacrebleu) on "
        f"detokenized text, case-insensitive; masked token accuracy (teacher-forced) {token_accuracy:.3f}"
    )
    log(evaluation.table(rows, list(rows[0])))
    samples = [
        {
            "source": test["source"][i],
            "reference": test["target"][i],
            **{name: str(systems[name][i]) for name in list(systems)[:2]},
        }
        for i in range(5)
    ]
    log("\nsample translations (beam):")
    for s in samples:
        log(f"  {s['source']}\n    → {s[rows[1]['system']]}\n    reference: {s['reference']}")

    metadata = {
        "data": {
            "source": d["source"],
            "columns": [d["source_column"], d["target_column"]],
            "sizes": dict(zip(stream.SPLITS, data.profile.sizes)),
            "skipped": data.skipped,
            "vocabulary": {k: v.vocabulary_size() for k, v in vectorizers.items()},
        },
        "metrics": {
            "headline": {"bleu": best["bleu"], "chrf": best["chrf"]},
            "test": rows,
            "token_accuracy": token_accuracy,
            "case_sensitive": False,
            "samples": samples,
        },
        "signatures": sorted(functions),
        "history": history,
        "train_seconds": round(seconds, 1),
        "test_decode_seconds": round(decode_seconds, 1),
    }
    return export.save(
        output_root,
        recipe,
        endpoints=functions,
        track=[translator.model, vectorizers["source"], vectorizers["target"]],
        keras_model=translator.model,
        metadata={"recipe": recipe.flat(), **metadata},
        extras=[("training_curves.png", lambda p: evaluation.plot_history(history, p))],
    )


def unigram_loss(data):
    """Cross-entropy of predicting every target word (and each sentence's end) by its frequency
    alone, in the sample of training pairs."""
    ids = data.vectorizers["target"](tf.constant(data.profile.samples["target"]))
    counts = np.bincount(ids.numpy().ravel(), minlength=data.end_id + 1)
    counts[0], counts[data.end_id] = 0, ids.shape[0]  # padding is no word; every sentence ends
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


# ------------------------------------------------------------------------------- command line


def show_attention(outputs, index, path):
    """A heatmap of one translation's attention weights: output words down, source words across."""
    source = [s.decode("utf-8", "replace") for s in outputs["source_tokens"][index] if s]
    target = [s.decode("utf-8", "replace") for s in outputs["output_tokens"][index] if s]
    weights = outputs["weights"][index][: len(target), : len(source)]
    evaluation.plot_attention(weights, source, target, path)
