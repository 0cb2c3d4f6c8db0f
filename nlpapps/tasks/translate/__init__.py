"""Translation (many-to-many with delay): an encoder reads the whole source sentence, then a decoder
writes the translation one subword piece at a time, attending to the encoder's outputs.

Encoder: embedding → the shared recurrent stack (bidirectional, stacked). Decoder: embedding → the
shared stack (one way), started from the encoder's final states (projected where the widths
differ) → attention over the encoder outputs (additive, dot, or none) → a softmax over the target
pieces. Training is teacher-forced: the decoder reads the reference shifted by one, padding masked
out of the loss and the token accuracy. Translating runs the decoder one step at a time inside the
graph (nlpapps.decoding: greedy and beam search), so evaluation, the CLI and the export agree.

Both sides are WordPiece pieces (`wordpiece`: learned per side with Hugging Face `tokenizers`,
tokenized in the graph with core TensorFlow ops). Ids 0-3 are padding, unknown, start and end; the
search never writes padding, unknown or start, so no output holds an unknown marker. Case is kept.

Modules by role: `wordpiece` and `preprocessor` (data, vocabularies, examples), `model`, `serving`
(the exported functions), `evaluation` (the test split's scores), `run` (the whole run).
"""

from nlpapps.tasks.translate.run import run
from nlpapps.tasks.translate.serving import chooser, show_attention

NAME = "translate"
__all__ = ["NAME", "chooser", "run", "show_attention"]
