"""The conditioned decoder: the conditions (an embedding per category, the numbers scaled to -1 … 1)
make one condition vector; projected, it is the initial state of every recurrent layer, and it is
also read at every step beside the previous character's embedding, and beside the recurrent output
that the softmax over the characters reads. A unidirectional stack from the shared blocks. Trained
teacher-forced: the input is the start and the text, the target the text and the end; padding
(id 0) is left out of the loss."""

import keras
import tensorflow as tf
from keras import ops

from nlpapps import training
from nlpapps.blocks import recurrent_stack


@keras.saving.register_keras_serializable(package="nlpapps")
class EveryStep(keras.layers.Layer):
    """A sequence[batch, time, features] with a vector[batch, width] beside each of its steps."""

    def call(self, sequence, vector):
        steps = tf.shape(sequence)[1]
        return tf.concat([sequence, tf.tile(vector[:, None, :], tf.stack([1, steps, 1]))], axis=-1)

    def compute_output_shape(self, sequence_shape, vector_shape):
        return (*sequence_shape[:-1], sequence_shape[-1] + vector_shape[-1])


class Generator:
    """The layers, the teacher-forced Keras model made of them (what trains, and the `.keras` twin),
    and `start`/`step`, the same layers run one character at a time for sampling. With no
    conditions (an unconditional model) the condition vector is a learned constant."""

    def __init__(self, conditions, classes, m):
        categories = [c for c in conditions if c.kind == "category"]
        numbers = [c for c in conditions if c.kind == "number"]
        self.category_embeddings = [
            keras.layers.Embedding(len(c.values) + 1, m["condition_dim"], name=f"condition_{c.name}")
            for c in categories
        ]
        self.condition = keras.layers.Dense(m["condition_dim"], activation="tanh", name="condition")
        self.char_embedding = keras.layers.Embedding(classes, m["embedding_dim"], name="char_embedding")
        self.decoder = recurrent_stack(
            m["cell"],
            m["units"],
            m["depth"],
            False,
            m["dropout"],
            return_sequences=True,
            return_state=True,
            all_states=True,
            name="decoder",
        )
        self.bridges = [
            keras.layers.Dense(m["units"], activation="tanh", name=f"initial_state_{i}")
            for i in range(m["depth"] * self.decoder.states_per_layer)
        ]
        self.dropout = keras.layers.Dropout(m["dropout"], name="output_dropout")
        self.logits = keras.layers.Dense(classes, name="logits")

        chars_in = keras.Input((None,), dtype="int32", name="chars_in")
        category_ids = keras.Input((len(categories),), dtype="int32", name="categories")
        scaled = keras.Input((len(numbers),), dtype="float32", name="numbers")
        vector = self.vector(category_ids, scaled)
        x = self.char_embedding(chars_in)
        x = EveryStep(name="condition_every_step")(x, vector)
        outputs, _ = self.decoder(x, initial_state=self.start(vector))
        outputs = EveryStep(name="condition_at_output")(self.dropout(outputs), vector)
        logits = self.logits(outputs)
        self.model = keras.Model([chars_in, category_ids, scaled], logits, name="generate")

    def vector(self, category_ids, scaled):
        """The condition vector[batch, condition_dim] of category ids[batch, categories] and scaled
        numbers[batch, numbers]; a column of ones lets a model without conditions learn a constant."""
        parts = [ops.ones_like(ops.sum(ops.cast(category_ids, "float32"), axis=1, keepdims=True))]
        parts += [embed(category_ids[:, i]) for i, embed in enumerate(self.category_embeddings)]
        if scaled.shape[-1]:
            parts.append(scaled)
        return self.condition(ops.concatenate(parts, axis=-1))

    def start(self, vector):
        """Every recurrent layer's initial states, projected from the condition vector."""
        return [bridge(vector) for bridge in self.bridges]

    def step(self, tokens, states, vector):
        """One step: the previous characters[n] → logits[n, classes] and the new states."""
        x = ops.concatenate([self.char_embedding(tokens), vector], axis=-1)
        y, states = self.decoder.step(x, states)
        return self.logits(ops.concatenate([y, vector], axis=-1)), states

    def compile(self, learning_rate):
        self.model.compile(
            optimizer=training.Adam(learning_rate, clipnorm=5.0),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0),
            jit_compile=False,
        )
