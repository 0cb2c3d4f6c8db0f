"""What `run` measures: perplexity per character against an unconditional model and an n-gram
model, how many generated texts copy a training text, their diversity, and control: whether a
sentiment model judges texts generated for a higher score as more positive."""

import numpy as np
import tensorflow as tf

from nlpapps import evaluation
from nlpapps.errors import UserError


@tf.function(reduce_retracing=True)
def _log_likelihood(model, x, y):
    logp = tf.nn.log_softmax(model(x, training=False))
    kept = tf.cast(y > 0, tf.float32)
    return tf.reduce_sum(tf.gather(logp, y, batch_dims=2) * kept), tf.reduce_sum(kept)


def perplexity(model, batches):
    """exp(mean negative log-likelihood per token) over every non-padding target of `batches`:
    the characters and each text's end."""
    total, count = 0.0, 0.0
    for x, y in batches:
        s, n = _log_likelihood(model, x, y)
        total, count = total + float(s), count + float(n)
    return float(np.exp(-total / max(count, 1.0)))


def ngram_perplexity(corpus, order):
    """The n-gram baseline's perplexity on the test texts, on the same tokens as the model's."""
    train, test = ([[str(i) for i in row[:-1]] for row in corpus.ids(corpus.texts(k))] for k in ("train", "test"))
    return evaluation.ngram_perplexity(train, test, order)


def requests(corpus, per_value, seed):
    """Condition values to generate from: for each value of the first category condition,
    `per_value` rows whose other conditions are those of test rows with that value (all test rows
    when there is no category). Returns ({name: array}, each row's group: its value or "all")."""
    rng = np.random.default_rng(seed)
    test, train = corpus.splits["test"], corpus.splits["train"]
    first = next((c for c in corpus.conditions if c.kind == "category"), None)
    groups = first.values if first else ["all"]
    values = {c.name: [] for c in corpus.conditions}
    rows_of = []
    for group in groups:
        table = test
        rows = np.flatnonzero(table[first.name].astype(str) == group) if first else np.arange(len(table["text"]))
        if not len(rows):  # a value with no test row: its training rows give the other conditions
            table = train
            rows = np.flatnonzero(table[first.name].astype(str) == group)
        chosen = rng.choice(rows, per_value, replace=len(rows) < per_value)
        for c in corpus.conditions:
            values[c.name].extend(table[c.name][chosen])
        rows_of += [group] * per_value
    arrays = {
        c.name: np.array(values[c.name], dtype=str if c.kind == "category" else np.float32) for c in corpus.conditions
    }
    return arrays, rows_of


def generate(sample, values, settings, rows, batch_size=256):
    """Texts (str) sampled by `sample` (serving's sampler) for every one of `rows` rows of `values`
    (without conditions: `rows` texts), one each."""
    out = []
    for start in range(0, rows, batch_size):
        chunk = {k: tf.constant(v[start : start + batch_size]) for k, v in values.items()}
        count = 1 if values else min(batch_size, rows - start)
        chosen = {
            "temperature": tf.constant(settings["temperature"], tf.float32),
            "seed": tf.constant(settings["seed"] + start, tf.int64),
            "count": tf.constant(count, tf.int32),
        }  # tensors: a new Python value would trace the sampler again
        result = sample(chunk, chosen)
        out += [t.decode("utf-8", "replace") for t in result["text"].numpy()]
    return out


def diversity(generated, groups, corpus):
    """Per group and over all: texts, share copying a training text (of the same group, for a
    group of the first category condition) exactly, distinct-1 and distinct-2 (words)."""
    first = next((c for c in corpus.conditions if c.kind == "category"), None)
    train = corpus.splits["train"]
    everything = set(map(str, train["text"]))
    rows = []
    for group in [*dict.fromkeys(groups), "all"]:
        picked = [g for g, name in zip(generated, groups) if group in ("all", name)]
        if group == "all" or first is None:
            seen = everything
        else:
            seen = set(map(str, train["text"][train[first.name].astype(str) == group]))
        rows.append(
            {
                "group": group,
                "texts": len(picked),
                "copies": sum(t in seen for t in picked) / max(len(picked), 1),
                "distinct_1": evaluation.distinct_n(picked, 1),
                "distinct_2": evaluation.distinct_n(picked, 2),
            }
        )
    return rows


def control(sample, corpus, settings, e, judge_path):
    """Texts generated for each requested value of the control condition (the other conditions:
    categories in turn, numbers at their training mean), judged by the sentiment export at
    `judge_path`: Spearman's rho between requested and judged scores, the mean judged score per
    request, and the texts."""
    from scipy.stats import spearmanr

    requested = np.repeat(np.asarray(e["control_scores"], np.float32), e["control_texts"])
    values = {}
    for c in corpus.conditions:
        if c.name == e["control"]:
            values[c.name] = requested
        elif c.kind == "category":
            values[c.name] = np.array([c.values[i % len(c.values)] for i in range(len(requested))])
        else:
            values[c.name] = np.full(len(requested), c.mean, np.float32)
    texts = generate(sample, values, settings, len(requested))
    judge = tf.saved_model.load(str(judge_path)).signatures["serving_default"]
    judged = np.concatenate(
        [judge(text=tf.constant(texts[i : i + 256]))["score"].numpy() for i in range(0, len(texts), 256)]
    )
    means = {float(r): float(judged[requested == r].mean()) for r in e["control_scores"]}
    rho = spearmanr(requested, judged).statistic
    return {"spearman": float(rho), "mean_judged": means, "judge": str(judge_path)}, texts


def judge_path(e, conditions, output_root, log):
    """The sentiment export that judges control texts: evaluate.sentiment_model, else the newest in
    <output>/sentiment; None (control skipped, said why) when there is none, or when the data has no
    condition named evaluate.control."""
    from pathlib import Path

    from nlpapps import export

    if not e["control"]:
        return None
    if e["control"] not in conditions:
        log(f"control skipped: evaluate.control = {e['control']!r} is not one of data.conditions {list(conditions)}")
        return None
    if e["sentiment_model"]:
        path = Path(e["sentiment_model"])
        if export.metadata(path).get("task") != "sentiment":
            raise UserError(f"evaluate.sentiment_model: {path} is not a sentiment export")
        return path
    found = export.versions(Path(output_root) / "sentiment")
    if not found:
        log(
            f"control skipped: no sentiment export in {Path(output_root) / 'sentiment'} "
            "(`nlpapps run sentiment` makes one; evaluate.sentiment_model names another)"
        )
        return None
    return Path(output_root) / "sentiment" / str(found[-1])
