"""A split's scores: BLEU and chrF (sacrebleu) of greedy, beam search and copying the source, cased
(the headline) and case-insensitive, summed from sacrebleu's statistics batch by batch so that a
large split is never held in memory; the share of outputs that repeat a 3-gram (against the
references'), unknown markers, and source words unseen in training that the output copies."""

import math
import time

import numpy as np

from nlpapps import evaluation, training
from nlpapps.data import stream
from nlpapps.tasks.translate.preprocessor import WORD
from nlpapps.tasks.translate.serving import translate_all

UNKNOWN = "[UNK]"
CHUNK = 1024  # pairs decoded together, sorted by length into batches


def repeats_a_trigram(sentence):
    """Whether a word 3-gram occurs twice in `sentence` (words: runs of letters and digits)."""
    words = WORD.findall(sentence)
    grams = list(zip(words, words[1:], words[2:]))
    return len(set(grams)) < len(grams)


class Scores:
    """One system's running totals over the pairs added so far."""

    def __init__(self, known_words):
        import sacrebleu

        self.metrics = {
            "bleu": sacrebleu.BLEU(),
            "chrf": sacrebleu.CHRF(),
            "bleu_uncased": sacrebleu.BLEU(lowercase=True),
            "chrf_uncased": sacrebleu.CHRF(lowercase=True),
        }
        self.totals = dict.fromkeys(self.metrics)
        self.known_words = known_words
        self.counts = {"sentences": 0, "repeated": 0, "unknown": 0, "unseen": 0, "unseen_copied": 0}

    def add(self, hypotheses, references, sources):
        hypotheses, references = [str(h) for h in hypotheses], [str(r) for r in references]
        for name, metric in self.metrics.items():
            # sacrebleu's own statistics, summed here as its corpus_score sums them
            stats = np.sum(metric._extract_corpus_statistics(hypotheses, [references]), axis=0)
            self.totals[name] = stats if self.totals[name] is None else self.totals[name] + stats
        c = self.counts
        c["sentences"] += len(hypotheses)
        c["repeated"] += sum(map(repeats_a_trigram, hypotheses))
        c["unknown"] += sum(h.count(UNKNOWN) for h in hypotheses)
        for source, hypothesis in zip(sources, hypotheses):
            unseen = {w for w in WORD.findall(source) if w not in self.known_words}
            c["unseen"] += len(unseen)
            c["unseen_copied"] += len(unseen & set(WORD.findall(hypothesis)))

    def result(self):
        c = self.counts
        scores = {k: float(m._compute_score_from_stats(list(self.totals[k])).score) for k, m in self.metrics.items()}
        return {
            "sentences": c["sentences"],
            **scores,
            "repeated_3gram_%": 100.0 * c["repeated"] / max(c["sentences"], 1),
            "unknown_markers": c["unknown"],
            "unseen_source_words": c["unseen"],
            "unseen_copied_%": 100.0 * c["unseen_copied"] / c["unseen"] if c["unseen"] else None,
        }


def chunks(data, split, limit):
    """({"source", "target"} lists of up to CHUNK pairs) of a split in file order, `limit` pairs in
    all (0: every pair)."""
    pairs, done = {"source": [], "target": []}, 0
    for columns in data.source.batches(stream.SPLITS.index(split)):
        for name, column in zip(data.source.names, columns):
            pairs[name].extend(column)
        while len(pairs["source"]) >= CHUNK or (limit and done + len(pairs["source"]) >= limit):
            take = min(CHUNK, limit - done) if limit else CHUNK
            yield {k: v[:take] for k, v in pairs.items()}
            pairs, done = {k: v[take:] for k, v in pairs.items()}, done + take
            if limit and done >= limit:
                return
    if pairs["source"]:
        yield pairs


def score_split(functions, data, split, recipe):
    """({system: Scores.result()}, the references' repeated 3-gram share in %, five sample
    translations, seconds spent decoding) of a split's first evaluation.max_pairs pairs."""
    width = recipe["decode"]["beam_width"]
    calls = {"greedy": functions["translate_greedy"][0], f"beam {width}": functions["serving_default"][0]}
    scores = {name: Scores(data.known_words) for name in [*calls, "copy the source"]}
    references, samples, seconds = np.zeros(2), [], 0.0
    for pairs in chunks(data, split, recipe["evaluation"]["max_pairs"]):
        start = time.perf_counter()
        outputs = {name: translate_all(call, pairs["source"]) for name, call in calls.items()}
        seconds += time.perf_counter() - start
        outputs["copy the source"] = pairs["source"]
        for name, hypotheses in outputs.items():
            scores[name].add(hypotheses, pairs["target"], pairs["source"])
        references = [
            references[0] + sum(map(repeats_a_trigram, pairs["target"])),
            references[1] + len(pairs["target"]),
        ]
        samples += [
            {"source": s, "reference": r, **{name: str(outputs[name][i]) for name in calls}}
            for i, (s, r) in enumerate(zip(pairs["source"][: 5 - len(samples)], pairs["target"]))
        ]
    results = {name: s.result() for name, s in scores.items()}
    return results, float(100.0 * references[0] / max(references[1], 1)), samples, seconds


def test_split(functions, model, batches, data, recipe, log):
    """The test split's scores, logged as a table with five samples; returns the metrics that go into
    the export's metadata (the headline: cased BLEU and chrF of the exported beam search)."""
    limit, batch_size = recipe["evaluation"]["max_pairs"], recipe["train"]["batch_size"]
    batches = batches.take(math.ceil(limit / batch_size)) if limit else batches
    token_accuracy = float(training.evaluate(model, batches)["token_accuracy"])
    results, references, samples, seconds = score_split(functions, data, "test", recipe)
    rows = [{"system": name, **r} for name, r in results.items()]
    rows.append({"system": "references", "sentences": rows[0]["sentences"], "repeated_3gram_%": references})
    best = rows[1]
    log(
        f"\ntest split: {best['sentences']} pairs never used in training (evaluation.max_pairs = {limit or 'all'}); "
        "BLEU and chrF (sacrebleu) on detokenized text, cased, and case-insensitive beside; "
        f"masked token accuracy (teacher-forced) {token_accuracy:.3f}"
    )
    log(evaluation.table(rows, [c for c in rows[0] if c != "unseen_source_words"]))
    log("\nsample translations (beam):")
    for s in samples:
        log(f"  {s['source']}\n    → {s[best['system']]}\n    reference: {s['reference']}")
    return {
        "headline": {"bleu": best["bleu"], "chrf": best["chrf"]},
        "test": rows,
        "token_accuracy": token_accuracy,
        "case_sensitive": True,
        "samples": samples,
        "test_decode_seconds": round(seconds, 1),
    }
