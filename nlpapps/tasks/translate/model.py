"""The encoder-decoder: the layers, the teacher-forced Keras model that trains, and the same layers
run one target word at a time for the search."""

import keras

from nlpapps import training
from nlpapps.blocks import Attention, recurrent_stack
from nlpapps.tasks.translate import wordpiece


class Translator:
    """The layers, the teacher-forced Keras model made of them (what trains, and the `.keras`
    twin), and `encode`/`step`, the same layers run one target word at a time for the search."""

    def __init__(self, source_vocab, target_vocab, m):
        self.start_id, self.end_id, classes = wordpiece.START, wordpiece.END, target_vocab
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
