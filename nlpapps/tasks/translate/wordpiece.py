"""Subword vocabularies: learned per side with Hugging Face `tokenizers` at training time, applied by
a WordPiece tokenizer written in core TensorFlow ops (a lookup table, string ops, a while loop), so
that the same function tokenizes in training, in evaluation and inside the SavedModel, which then
loads in a process that imports only tensorflow.

Text keeps its case. Words are split on whitespace and every punctuation character is a word of its
own, as the library's `WhitespaceSplit` and `Punctuation` pre-tokenizers do; a word is then cut
into the longest pieces of the vocabulary from its start ("##" marks a piece that continues a word).
Every character of the sample and of ALPHABET is a piece, alone and as a continuation, so a word
never seen is still read piece by piece; a word with a character outside both (another script), or
over MAX_CHARS characters, is the unknown id.
"""

import tensorflow as tf

SPECIALS = ("[PAD]", "[UNK]", "[START]", "[END]")
PAD, UNK, START, END = range(4)
PREFIX = "##"
MAX_CHARS = 100  # the library's max_input_chars_per_word
# Unicode White_Space (what Rust's char::is_whitespace accepts), and punctuation: ASCII punctuation
# and the Unicode P categories.
WHITESPACE = r"[\t-\r\x{85}\p{Z}]+"
PUNCTUATION = r"([\pP!-/:-@\[-`{-~])"
# Printable ASCII and the Latin letters of Latin-1 and Latin Extended-A (accents, œ, ß).
ALPHABET = [chr(c) for c in (*range(0x21, 0x7F), *range(0xC0, 0x180)) if c not in (0xD7, 0xF7)]


def learn(texts, size):
    """The WordPiece vocabulary (a list, the specials first) of `size` pieces learned from `texts` by
    Hugging Face `tokenizers`, then every character of `texts` and ALPHABET not yet a piece, alone
    and as a continuation."""
    from tokenizers import Tokenizer, models, trainers

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=MAX_CHARS))
    tokenizer.pre_tokenizer = library_pre_tokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=size, special_tokens=list(SPECIALS), continuing_subword_prefix=PREFIX, show_progress=False
    )
    tokenizer.train_from_iterator(texts, trainer)
    vocab = tokenizer.get_vocab()
    learned = sorted(vocab, key=vocab.get)
    characters = sorted(c for c in set(ALPHABET).union(*map(set, texts)) if not c.isspace())
    extra = [p for c in characters for p in (c, PREFIX + c) if p not in vocab]
    return learned + extra


def library_pre_tokenizer():
    from tokenizers import pre_tokenizers

    return pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])


def library_tokenizer(vocabulary):
    """The library's own WordPiece tokenizer with `vocabulary`: what the in-graph one reproduces."""
    from tokenizers import Tokenizer, models

    model = models.WordPiece(
        {p: i for i, p in enumerate(vocabulary)}, unk_token="[UNK]", max_input_chars_per_word=MAX_CHARS
    )
    tokenizer = Tokenizer(model)
    tokenizer.pre_tokenizer = library_pre_tokenizer()
    return tokenizer


def words(texts):
    """Strings[batch] → ragged words[batch, None]: invalid UTF-8 replaced, punctuation split off."""
    texts = tf.strings.unicode_transcode(texts, "UTF-8", "UTF-8", errors="replace")
    texts = tf.strings.regex_replace(texts, PUNCTUATION, r" \1 ")
    return tf.strings.split(tf.strings.regex_replace(texts, WHITESPACE, " "))


class WordPiece(tf.Module):
    """Text ↔ piece ids with a fixed vocabulary, in TensorFlow ops only."""

    def __init__(self, vocabulary, name=None):
        super().__init__(name=name)
        self.vocabulary = list(vocabulary)
        self.pieces = tf.constant(self.vocabulary)
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(self.pieces, tf.range(len(self.vocabulary), dtype=tf.int32)), -1
        )
        bare = [p[len(PREFIX) :] if p.startswith(PREFIX) else p for p in self.vocabulary]
        self.longest = max(len(p) for p in bare)  # characters of the longest piece

    def vocabulary_size(self):
        return len(self.vocabulary)

    def __call__(self, texts):
        """Strings[batch] → ragged int32 piece ids[batch, None]."""
        split = words(texts)
        return split.with_flat_values(self.word_ids(split.flat_values)).merge_dims(1, 2)

    def word_ids(self, words):
        """Words[n] → ragged piece ids[n, None]. A word of the vocabulary is its own id; the others
        are cut by `_walk`, the unknown id where they cannot be."""
        whole = self.table.lookup(words)
        cut = whole < 0
        pieces = self._walk(tf.boolean_mask(words, cut))  # [cut words, steps], -1 after the last
        columns = tf.shape(pieces)[1]
        rows = tf.scatter_nd(tf.cast(tf.where(cut), tf.int32), pieces + 1, tf.stack([tf.size(words), columns])) - 1
        first = tf.range(columns)[None] == 0
        rows = tf.where(cut[:, None], rows, tf.where(first, whole[:, None], -1))
        return tf.RaggedTensor.from_tensor(rows, padding=-1)

    def _walk(self, words):
        """Greedy longest match from each word's start: the longest piece there, then on from its
        end. Returns piece ids[n, steps] with -1 after a word's last; [UNK] alone for a word with a
        position no piece starts (or over MAX_CHARS characters)."""
        chars, offsets = tf.strings.unicode_decode_with_offsets(words, "UTF-8")
        lengths = tf.cast(chars.row_lengths(), tf.int32)
        size = tf.strings.length(words)
        offsets = tf.concat([tf.cast(offsets, tf.int32), size[:, None]], axis=1).to_tensor(-1)
        offsets = tf.where(offsets < 0, size[:, None], offsets)  # [n, chars + 1] byte offsets
        sizes = tf.range(1, self.longest + 1)[None]
        n = tf.shape(words)[0]

        def body(position, failed, pieces):
            ends = position[:, None] + sizes
            begin = tf.gather(offsets, position, batch_dims=1)
            end = tf.gather(offsets, tf.minimum(ends, lengths[:, None]), batch_dims=1)
            shape = tf.shape(end)
            piece = tf.strings.substr(
                tf.broadcast_to(words[:, None], shape), tf.broadcast_to(begin[:, None], shape), end - begin[:, None]
            )
            piece = tf.where(position[:, None] > 0, PREFIX + piece, piece)
            options = tf.where(ends <= lengths[:, None], self.table.lookup(piece), -1)
            found = options >= 0
            longest = self.longest - tf.argmax(tf.reverse(tf.cast(found, tf.int32), [1]), 1, tf.int32)
            active = (position < lengths) & ~failed
            ok = active & tf.reduce_any(found, axis=1)
            chosen = tf.gather(options, longest - 1, batch_dims=1)
            pieces = tf.concat([pieces, tf.where(ok, chosen, -1)[:, None]], axis=1)
            return tf.where(ok, position + longest, position), failed | (active & ~ok), pieces

        def cond(position, failed, pieces):
            return tf.reduce_any((position < lengths) & ~failed)

        loop = (tf.zeros([n], tf.int32), lengths > MAX_CHARS, tf.zeros([n, 0], tf.int32))
        invariants = (tf.TensorShape([None]), tf.TensorShape([None]), tf.TensorShape([None, None]))
        _, failed, pieces = tf.while_loop(cond, body, loop, shape_invariants=invariants)
        pieces = tf.pad(pieces, [[0, 0], [0, 1]], constant_values=-1)  # at least one column
        first = tf.range(tf.shape(pieces)[1])[None] == 0
        return tf.where(failed[:, None], tf.where(first, UNK, -1), pieces)

    def detokenize(self, ids, keep):
        """Piece ids[batch, time] → text: the pieces where `keep`, a word's pieces joined, then the
        spacing of written text (`text.detokenize`)."""
        from nlpapps.data import text

        joined = tf.strings.reduce_join(
            tf.ragged.boolean_mask(tf.gather(self.pieces, ids), keep), axis=-1, separator=" "
        )
        return text.detokenize(tf.strings.regex_replace(joined, "(^| )" + PREFIX, ""))
