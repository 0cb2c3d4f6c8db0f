"""The exported signatures: the conditions in (one named input each: a string for a category, a
float for a number), texts out, sampled inside the graph with core TensorFlow ops only.

serving_default(<conditions>, temperature, seed, count) samples `count` texts for every row of
conditions (rows repeated in place: row 0's texts first) with the recipe's top-k, top-p and maximum
length; sample(...) also takes top_k, top_p and max_length. Outputs: text[rows × count] and
score, the log-probability of each text under the model. A number outside its training range is
clamped to it; a category training never saw reads as unknown (the CLI refuses both)."""

import tensorflow as tf

from nlpapps import decoding

SETTINGS = {
    "temperature": tf.TensorSpec([], tf.float32, name="temperature"),
    "seed": tf.TensorSpec([], tf.int64, name="seed"),
    "count": tf.TensorSpec([], tf.int32, name="count"),
}
FULL = {
    **SETTINGS,
    "top_k": tf.TensorSpec([], tf.int32, name="top_k"),
    "top_p": tf.TensorSpec([], tf.float32, name="top_p"),
    "max_length": tf.TensorSpec([], tf.int32, name="max_length"),
}


def condition_specs(conditions):
    return [tf.TensorSpec([None], tf.string if c.kind == "category" else tf.float32, name=c.name) for c in conditions]


def sampler(generator, corpus, defaults):
    """A function (conditions {name: tensor[rows]}, settings {name: scalar}) → {"text", "score"};
    the settings missing from `settings` come from `defaults` (the recipe's [sample])."""
    chars = tf.constant(["", "", *corpus.chars, "", ""])
    conditions = corpus.conditions

    def run(values, settings):
        settings = {**defaults, **settings}
        count = tf.maximum(tf.cast(settings["count"], tf.int32), 1)
        categories, numbers = [], []
        for c in conditions:
            value = values[c.name]
            if c.kind == "category":  # 1 + the value's place among the training values; 0: unknown
                known = tf.equal(value[:, None], tf.constant(c.values)[None])
                ids = tf.argmax(tf.cast(known, tf.int32), axis=1, output_type=tf.int32) + 1
                categories.append(tf.where(tf.reduce_any(known, axis=1), ids, 0))
            else:
                numbers.append((tf.clip_by_value(tf.cast(value, tf.float32), c.low, c.high) - c.centre) / c.half_range)
        rows = tf.shape(values[conditions[0].name])[0] if conditions else tf.constant(1)
        category_ids = tf.stack(categories, axis=1) if categories else tf.zeros([rows, 0], tf.int32)
        scaled = tf.stack(numbers, axis=1) if numbers else tf.zeros([rows, 0], tf.float32)
        category_ids, scaled = tf.repeat(category_ids, count, axis=0), tf.repeat(scaled, count, axis=0)
        vector = generator.vector(category_ids, scaled)
        tokens, scores = decoding.sample(
            generator.step,
            generator.start(vector),
            vector,
            start_id=corpus.start_id,
            end_id=corpus.end_id,
            max_lengths=tf.fill([rows * count], tf.maximum(tf.cast(settings["max_length"], tf.int32), 1) + 1),
            seed=settings["seed"],
            temperature=settings["temperature"],
            top_k=settings["top_k"],
            top_p=settings["top_p"],
            banned=(0, 1, corpus.start_id),  # never padding, an unknown character or the start
        )
        return {"text": tf.strings.reduce_join(tf.gather(chars, tokens), axis=-1), "score": scores}

    return run


def signatures(generator, corpus, sample):
    """{name: (function, input signature)} for export.save: serving_default and sample."""
    names = [c.name for c in corpus.conditions]
    defaults = {"top_k": sample["top_k"], "top_p": sample["top_p"], "max_length": sample["max_length"]}
    run = sampler(generator, corpus, defaults)

    def endpoint(settings):
        def function(*args):
            return run(dict(zip(names, args)), dict(zip(settings, args[len(names) :])))

        specs = [*condition_specs(corpus.conditions), *settings.values()]
        return tf.function(function, input_signature=specs), specs

    return {"serving_default": endpoint(SETTINGS), "sample": endpoint(FULL)}
