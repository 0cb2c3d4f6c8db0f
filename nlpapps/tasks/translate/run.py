"""`nlpapps run translate`: data, model, training, evaluation on the test split, export; it reads top
to bottom."""

import time

from nlpapps import evaluation, export, training
from nlpapps.data import stream, text
from nlpapps.tasks.translate import evaluation as report
from nlpapps.tasks.translate.model import Translator
from nlpapps.tasks.translate.preprocessor import prepare, unigram_loss
from nlpapps.tasks.translate.serving import signatures


def run(recipe, output_root, log=print):
    t = recipe["train"]
    data = prepare(recipe, log)
    tokenizers = data.tokenizers
    with training.strategy(recipe).scope():
        translator = Translator(
            tokenizers["source"].vocabulary_size(), tokenizers["target"].vocabulary_size(), recipe["model"]
        )
        translator.compile(t["learning_rate"])
    examples = {k: data.examples(k) for k in stream.SPLITS}
    batches = {
        k: text.batches(examples[k], batch_size=t["batch_size"], shuffle=0, seed=t["seed"], max_length=data.max_tokens)
        for k in ("validation", "test")
    }
    train = training_batches(examples["train"], data, t)

    log(f"unigram level of the loss: {unigram_loss(data):.2f} (a model stuck there learns nothing)")
    start, cpu = time.perf_counter(), time.process_time()
    history = training.fit(translator.model, train, batches["validation"], t, training.run_dir(output_root, recipe))
    # wall and CPU (user + sys, every thread) time: on a shared machine the wall time alone says little
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    log(f"training: {seconds:.0f} s wall, {cpu:.0f} s CPU (user + sys)")

    functions = signatures(translator, tokenizers, recipe)
    metrics = report.test_split(functions, translator.model, batches["test"], data, recipe, log)
    metadata = {
        "data": data.summary(),
        "metrics": metrics,
        "signatures": sorted(functions),
        "history": history,
        "train_seconds": round(seconds, 1),
        "train_cpu_seconds": round(cpu, 1),
    }
    return export.save(
        output_root,
        recipe,
        endpoints=functions,
        track=[translator.model, tokenizers["source"], tokenizers["target"]],
        keras_model=translator.model,
        metadata={"recipe": recipe.flat(), **metadata},
        extras=[
            ("training_curves.png", lambda p: evaluation.plot_history(history, p)),
            *(
                (f"{k}_vocab.txt", lambda p, v=v: p.write_text("\n".join(v.vocabulary) + "\n"))
                for k, v in tokenizers.items()
            ),
        ],
    )


def training_batches(train_examples, data, t):
    """epoch → that epoch's training batches: each epoch's order from (seed, epoch), so a resumed
    run sees the same batches."""
    shuffle = min(t["shuffle_buffer"], data.size("train"))

    def train(epoch):
        ds = text.batches(
            train_examples,
            batch_size=t["batch_size"],
            shuffle=shuffle,
            seed=t["seed"],
            max_length=data.max_tokens,
            epoch=epoch,
        )
        return ds.take(t["steps_per_epoch"]) if t["steps_per_epoch"] else ds

    return train
