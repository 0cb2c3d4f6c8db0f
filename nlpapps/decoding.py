"""Greedy and beam-search decoding written with TensorFlow ops, so that an exported signature
decodes without Python: evaluation, the command line and the SavedModel run this same graph.

Both take a `step(tokens[n], states, context) -> (logits[n, vocab], states)` function, where
`states` (a decoder's recurrent states) and `context` (e.g. encoder outputs) are nests of tensors
whose first axis is the row; beam search tiles both to batch × width rows. A row decodes until it
emits `end_id` or reaches its `max_lengths` entry (where the end is forced); decoding stops when
every row has ended. A row with max_length 0 (an empty input) gives no token.

Scores are log-probabilities summed over the emitted tokens (the end included) and divided by
length ** length_penalty, the same for both, so a width-1 beam gives greedy's tokens and score.
With no_repeat_ngram = n > 1, a token that would repeat an n-gram already in its row is impossible.
"""

import tensorflow as tf

NEG = -1e9  # a finite "impossible": sums of it stay finite, so no NaN reaches a score


def _log_probs(logits, banned, end_id, at_cap, tokens=None, no_repeat_ngram=0):
    """Log-probabilities with banned tokens impossible, and tokens that would repeat an n-gram of
    `tokens[rows, time]` (with no_repeat_ngram = n > 1), and, where a row is at its length cap,
    every token but the end impossible."""
    vocab = tf.range(tf.shape(logits)[-1])
    logits = tf.where(tf.reduce_any(vocab[:, None] == tf.constant(banned, tf.int32)[None], axis=1), NEG, logits)
    if no_repeat_ngram > 1:
        n = no_repeat_ngram
        # Left padding with -1 (no token): window i of the padded row is the n-gram ending at token i.
        padded = tf.pad(tokens, [[0, 0], [n - 1, 0]], constant_values=-1)
        count = tf.shape(tokens)[1]
        windows = tf.stack([padded[:, i : i + count] for i in range(n)], axis=2)  # [rows, time, n]
        seen = tf.reduce_all(windows[:, :, :-1] == padded[:, count:][:, None], axis=2)  # its first n-1 are the last n-1
        where = tf.cast(tf.where(seen), tf.int32)
        blocked = tf.stack([where[:, 0], tf.gather_nd(windows[:, :, -1], where)], axis=1)
        logits = tf.tensor_scatter_nd_update(logits, blocked, tf.fill([tf.shape(blocked)[0]], NEG))
    logp = tf.nn.log_softmax(logits)
    return tf.where(at_cap[:, None] & (vocab != end_id)[None], NEG, logp)


def _normalised(total, lengths, length_penalty):
    return total / tf.pow(tf.maximum(tf.cast(lengths, tf.float32), 1.0), length_penalty)


def greedy(step, states, context, *, start_id, end_id, max_lengths, length_penalty=1.0, banned=(), no_repeat_ngram=0):
    """The most likely token at every step. Returns (tokens[batch, time] with 0 after the end,
    scores[batch])."""
    batch = tf.shape(max_lengths)[0]

    def body(t, last, states, finished, tokens, total, lengths):
        logits, states = step(last, states, context)
        logp = _log_probs(logits, banned, end_id, t + 1 >= max_lengths, tokens, no_repeat_ngram)
        chosen = tf.argmax(logp, axis=-1, output_type=tf.int32)
        gained = tf.gather(logp, chosen, batch_dims=1)
        total += tf.where(finished, 0.0, gained)
        lengths += tf.cast(~finished, tf.int32)
        chosen = tf.where(finished, 0, chosen)
        tokens = tf.concat([tokens, chosen[:, None]], axis=1)
        return t + 1, chosen, states, finished | (chosen == end_id), tokens, total, lengths

    def cond(t, last, states, finished, *_):
        return tf.logical_not(tf.reduce_all(finished))

    loop = (
        tf.constant(0),
        tf.fill([batch], start_id),
        states,
        max_lengths <= 0,
        tf.zeros([batch, 0], tf.int32),
        tf.zeros([batch]),
        tf.zeros([batch], tf.int32),
    )
    invariants = tf.nest.map_structure(lambda x: tf.TensorShape([None] * len(x.shape)), loop)
    _, _, _, _, tokens, total, lengths = tf.while_loop(cond, body, loop, shape_invariants=invariants)
    return tokens, _normalised(total, lengths, length_penalty)


def beam_search(
    step, states, context, *, start_id, end_id, max_lengths, width, length_penalty=1.0, banned=(), no_repeat_ngram=0
):
    """The `width` best partial translations kept at every step (batch × width rows decode at once);
    the best finished one by length-normalised score wins. `width` may be a tensor.
    Returns (tokens[batch, time] with 0 after the end, scores[batch])."""
    batch, width = tf.shape(max_lengths)[0], tf.convert_to_tensor(width, tf.int32)
    rows = batch * width

    def tile(x):
        return tf.repeat(x, width, axis=0)

    states, context, caps = tf.nest.map_structure(tile, (states, context, max_lengths))
    # Only the first beam is alive at the start: otherwise all would pick the same first token.
    first = tf.concat([tf.zeros([batch, 1]), tf.fill([batch, width - 1], NEG)], axis=1)

    def body(t, last, states, finished, tokens, total, lengths):
        logits, states = step(last, states, context)
        vocab = tf.shape(logits)[-1]
        logp = _log_probs(logits, banned, end_id, t + 1 >= caps, tf.reshape(tokens, [rows, -1]), no_repeat_ngram)
        # An ended beam goes on with padding at no cost, so it keeps its place among the best.
        ended = tf.reshape(finished, [rows])
        logp = tf.where(ended[:, None], tf.where(tf.range(vocab) == 0, 0.0, NEG)[None], logp)
        candidates = tf.reshape(total, [rows, 1]) + logp
        total, best = tf.math.top_k(tf.reshape(candidates, [batch, width * vocab]), k=width)
        parent, chosen = best // vocab, best % vocab
        finished, tokens, lengths = (tf.gather(x, parent, batch_dims=1) for x in (finished, tokens, lengths))
        rows_parent = tf.reshape(parent + tf.range(batch)[:, None] * width, [rows])
        states = tf.nest.map_structure(lambda s: tf.gather(s, rows_parent), states)
        lengths += tf.cast(~finished, tf.int32)
        tokens = tf.concat([tokens, chosen[:, :, None]], axis=2)
        return (t + 1, tf.reshape(chosen, [rows]), states, finished | (chosen == end_id), tokens, total, lengths)

    def cond(t, last, states, finished, *_):
        return tf.logical_not(tf.reduce_all(finished))

    loop = (
        tf.constant(0),
        tf.fill([rows], start_id),
        states,
        tf.reshape(caps <= 0, [batch, width]),
        tf.zeros([batch, width, 0], tf.int32),
        first,
        tf.zeros([batch, width], tf.int32),
    )
    invariants = tf.nest.map_structure(lambda x: tf.TensorShape([None] * len(x.shape)), loop)
    _, _, _, _, tokens, total, lengths = tf.while_loop(cond, body, loop, shape_invariants=invariants)
    scores = _normalised(total, lengths, length_penalty)
    winner = tf.argmax(scores, axis=1, output_type=tf.int32)
    return tf.gather(tokens, winner, batch_dims=1), tf.gather(scores, winner, batch_dims=1)


def sample(
    step,
    states,
    context,
    *,
    start_id,
    end_id,
    max_lengths,
    seed,
    temperature=1.0,
    top_k=0,
    top_p=1.0,
    banned=(),
):
    """A token drawn at every step from the softmax of log-probabilities / temperature, kept to the
    `top_k` most likely tokens (0: all) and to the fewest whose probability reaches `top_p` (1: all).
    The draw is the Gumbel-max trick on stateless noise of (seed, step): the same seed, inputs and
    settings give the same tokens, and row i's draws do not depend on how many rows follow it.
    temperature, top_k, top_p and seed may be tensors; a temperature near 0 is greedy.
    Returns (tokens[batch, time] with 0 after the end, scores[batch]): each sample's log-probability
    under the model itself (temperature 1, no truncation), summed over its tokens, the end included."""
    batch = tf.shape(max_lengths)[0]
    temperature = tf.maximum(tf.cast(temperature, tf.float32), 1e-6)
    top_k, top_p = tf.cast(top_k, tf.int32), tf.cast(top_p, tf.float32)
    seed = tf.cast(seed, tf.int64)

    def body(t, last, states, finished, tokens, total):
        logits, states = step(last, states, context)
        logp = _log_probs(logits, banned, end_id, t + 1 >= max_lengths)
        vocab = tf.shape(logp)[-1]
        ranked = tf.sort(logp, axis=-1, direction="DESCENDING")
        k = tf.where(top_k > 0, tf.minimum(top_k, vocab), vocab)
        floor = ranked[:, k - 1 : k]  # the k-th best log-probability of each row
        # top-p: the tokens ranked before the mass reaches top_p, and the one that reaches it
        before = tf.math.cumsum(tf.exp(ranked), axis=-1, exclusive=True)
        floor = tf.maximum(floor, tf.reduce_min(tf.where(before < top_p, ranked, 0.0), axis=-1, keepdims=True))
        kept = tf.where(logp >= floor, logp / temperature, NEG)
        noise = tf.random.stateless_uniform(tf.shape(kept), seed=tf.stack([seed, tf.cast(t, tf.int64)]), minval=1e-20)
        chosen = tf.argmax(kept - tf.math.log(-tf.math.log(noise)), axis=-1, output_type=tf.int32)
        total += tf.where(finished, 0.0, tf.gather(logp, chosen, batch_dims=1))
        chosen = tf.where(finished, 0, chosen)
        tokens = tf.concat([tokens, chosen[:, None]], axis=1)
        return t + 1, chosen, states, finished | (chosen == end_id), tokens, total

    def cond(t, last, states, finished, *_):
        return tf.logical_not(tf.reduce_all(finished))

    loop = (
        tf.constant(0),
        tf.fill([batch], start_id),
        states,
        max_lengths <= 0,
        tf.zeros([batch, 0], tf.int32),
        tf.zeros([batch]),
    )
    invariants = tf.nest.map_structure(lambda x: tf.TensorShape([None] * len(x.shape)), loop)
    _, _, _, _, tokens, total = tf.while_loop(cond, body, loop, shape_invariants=invariants)
    return tokens, total
