"""The test split: BLEU and chrF of greedy, beam search and copying the source, a few samples."""

import time

from nlpapps import evaluation, training
from nlpapps.tasks.translate.serving import translate_all


def test_split(functions, model, batches, test, recipe, log):
    """Scores of every system on the test split's pairs `test` ({"source", "target"}), logged as a
    table with five samples; returns the metrics that go into the export's metadata."""
    width = recipe["decode"]["beam_width"]
    token_accuracy = float(training.evaluate(model, batches)["token_accuracy"])
    start = time.perf_counter()
    systems = {
        "greedy": translate_all(functions["translate_greedy"][0], list(test["source"])),
        f"beam {width}": translate_all(functions["serving_default"][0], list(test["source"])),
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
            **{n: str(systems[n][i]) for n in list(systems)[:2]},
        }
        for i in range(5)
    ]
    log("\nsample translations (beam):")
    for s in samples:
        log(f"  {s['source']}\n    → {s[best['system']]}\n    reference: {s['reference']}")
    return {
        "headline": {"bleu": best["bleu"], "chrf": best["chrf"]},
        "test": rows,
        "token_accuracy": token_accuracy,
        "case_sensitive": False,
        "samples": samples,
        "test_decode_seconds": round(decode_seconds, 1),
    }
