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

from nlpapps.tasks.translate.run import run
from nlpapps.tasks.translate.serving import chooser, show_attention

NAME = "translate"
__all__ = ["NAME", "chooser", "run", "show_attention"]
