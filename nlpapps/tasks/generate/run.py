"""`nlpapps run generate`: read the texts and conditions, train the conditioned decoder (and an
unconditional one of the same size), measure, export with sampling inside the graph."""

import time

import tensorflow as tf

from nlpapps import evaluation as shared
from nlpapps import export, training
from nlpapps.data import text
from nlpapps.errors import UserError
from nlpapps.tasks.generate import data, serving
from nlpapps.tasks.generate import evaluation as measure
from nlpapps.tasks.generate.model import Generator

NAME = "generate"


def fit(corpus, recipe, workdir, conditioned=True):
    """A Generator trained on the training split (without its conditions: an unconditional one);
    returns (generator, history, seconds, test batches)."""
    m, t = recipe["model"], recipe["train"]
    examples = {k: data.examples(corpus, k) for k in ("train", "validation", "test")}
    if not conditioned:
        examples = {k: ds.map(lambda x, y: ((x[0], x[1][:0], x[2][:0]), y)) for k, ds in examples.items()}
    longest = max(len(s) for s in corpus.texts("train")) + 1
    # Training on full batches only (see text.batches), where the split is large enough to lose the
    # partial batch of each length bucket every epoch: 100 batches or more.
    full_only = corpus.size("train") >= 100 * t["batch_size"]

    def batches(split, epoch=None):
        shuffle = corpus.size(split) if epoch is not None else 0
        size, seed = t["batch_size"], t["seed"]
        ds = text.batches(
            examples[split],
            batch_size=size,
            shuffle=shuffle,
            seed=seed,
            max_length=longest,
            epoch=epoch,
            full_only=full_only and epoch is not None,
        )
        return ds.take(t["steps_per_epoch"]) if epoch is not None and t["steps_per_epoch"] else ds

    with training.strategy(recipe).scope():
        generator = Generator(corpus.conditions if conditioned else [], corpus.classes, m)
        generator.compile(t["learning_rate"])
    start = time.perf_counter()
    history = training.fit(generator.model, lambda epoch: batches("train", epoch), batches("validation"), t, workdir)
    return generator, history, time.perf_counter() - start, batches("test")


def run(recipe, output_root, log=print):
    d, s, e = recipe["data"], recipe["sample"], recipe["evaluate"]
    data.check_names(d["conditions"])
    judge = measure.judge_path(e, d["conditions"], output_root, log)
    corpus = data.load(recipe, log)
    control_kind = next((c.kind for c in corpus.conditions if c.name == e["control"]), "number")
    if e["control"] and control_kind != "number":
        raise UserError(f"evaluate.control: {e['control']!r} holds categories, not a number a sentiment model judges")
    generator, history, seconds, rows = _train_and_compare(corpus, recipe, output_root, log)

    functions = serving.signatures(generator, corpus, s)
    defaults = {k: s[k] for k in ("top_k", "top_p", "max_length")}
    sample = tf.function(serving.sampler(generator, corpus, defaults), reduce_retracing=True)
    settings = {"temperature": s["temperature"], "seed": recipe["train"]["seed"]}
    values, groups = measure.requests(corpus, e["per_value"], recipe["train"]["seed"])
    start = time.perf_counter()
    generated = measure.generate(sample, values, settings, len(groups))
    sample_seconds = time.perf_counter() - start
    diversity = measure.diversity(generated, groups, corpus)
    log(
        f"\n{len(generated)} texts generated at temperature {s['temperature']} in {sample_seconds:.1f} s "
        f"({len(generated) / sample_seconds:.0f}/s); copies: the share equal to a training text"
    )
    log(shared.table(diversity, list(diversity[0])))
    control = _control(sample, corpus, settings, e, judge, log)
    samples = _samples(generated, values, groups, corpus, log)
    metadata = {
        "data": {
            "source": d["source"],
            "text_column": d["text_column"],
            "sizes": {k: corpus.size(k) for k in corpus.splits},
            "skipped": corpus.skipped,
            "characters": len(corpus.chars),
        },
        "conditions": {c.name: c.describe() for c in corpus.conditions},
        "sample": dict(s),
        "metrics": {
            "headline": {"perplexity": rows[0]["perplexity"], "copies": diversity[-1]["copies"]},
            "perplexity": rows,
            "generated": diversity,
            "control": control,
            "samples": samples,
        },
        "signatures": sorted(functions),
        "history": history,
        "train_seconds": round(seconds, 1),
    }
    if control:
        metadata["metrics"]["headline"]["control_spearman"] = control["spearman"]
    return export.save(
        output_root,
        recipe,
        endpoints=functions,
        track=[generator.model],
        keras_model=generator.model,
        metadata={"recipe": recipe.flat(), **metadata},
        extras=[("training_curves.png", lambda p: shared.plot_history(history, p))],
    )


def _train_and_compare(corpus, recipe, output_root, log):
    """The conditioned model, trained, and the test perplexity table: it, an unconditional model
    of the same size (evaluate.unconditional), and the n-gram baseline."""
    e = recipe["evaluate"]
    workdir = training.run_dir(output_root, recipe)
    generator, history, seconds, test = fit(corpus, recipe, workdir)
    rows = [{"model": "conditional (this model)", "perplexity": measure.perplexity(generator.model, test)}]
    if e["unconditional"]:
        log("\nthe unconditional model of the same size, for comparison:")
        plain, _, _, plain_test = fit(corpus, recipe, workdir / "unconditional", conditioned=False)
        rows.append({"model": "unconditional, same size", "perplexity": measure.perplexity(plain.model, plain_test)})
    start = time.perf_counter()
    ngram = measure.ngram_perplexity(corpus, e["ngram_order"])
    rows.append({"model": f"{e['ngram_order']}-gram (nltk, Witten-Bell)", "perplexity": ngram})
    log(f"\ntest split: {corpus.size('test')} texts; perplexity per character (the end of a text included)")
    log(shared.table(rows, ["model", "perplexity"]))
    log(f"(n-gram fitted and scored in {time.perf_counter() - start:.0f} s)")
    return generator, history, seconds, rows


def _control(sample, corpus, settings, e, judge, log):
    if judge is None:
        return None
    result, texts = measure.control(sample, corpus, settings, e, judge)
    log(f"\ncontrol: {len(texts)} texts judged by the sentiment model {judge}")
    table = [{f"requested {e['control']}": k, "mean judged score": v} for k, v in result["mean_judged"].items()]
    log(shared.table(table, list(table[0])))
    log(f"Spearman's rho between requested and judged scores: {result['spearman']:.3f}")
    return result


def _samples(generated, values, groups, corpus, log, each=3):
    """A few generated texts of every group, printed and kept in the metadata."""
    log("\nsamples:")
    out = []
    for group in dict.fromkeys(groups):
        for i in [i for i, g in enumerate(groups) if g == group][:each]:
            conditions = {c.name: values[c.name][i].item() for c in corpus.conditions}
            out.append({"conditions": conditions, "text": generated[i]})
            shown = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in conditions.items())
            log(f"  [{shown}] {generated[i]}")
    return out
