"""Translation quality per CPU second: trains the translation recipe (with `--set` changes) epoch by
epoch and prints, after each, the training CPU time (user + sys) and wall time, the validation loss
and the greedy BLEU and chrF (sacrebleu, cased) on the validation split, where defaults are chosen
(never on the test split). Runs compared share the seed and the data.

    python benchmarks/translate_budget.py --epochs 4 [--set text.target_vocab=2000 ...]
"""

import argparse
import json
import os
import tempfile
import time

from nlpapps import recipes, training
from nlpapps.data import text
from nlpapps.tasks.translate import evaluation as report
from nlpapps.tasks.translate import run
from nlpapps.tasks.translate.model import Translator
from nlpapps.tasks.translate.preprocessor import prepare
from nlpapps.tasks.translate.serving import signatures, translate_all


def validation_scores(greedy, data):
    import sacrebleu

    sources, references = [], []
    for pairs in report.chunks(data, "validation", 0):
        sources += pairs["source"]
        references += pairs["target"]
    hypotheses = [str(h) for h in translate_all(greedy, sources)]
    return {
        "bleu": round(sacrebleu.corpus_bleu(hypotheses, [references]).score, 2),
        "chrf": round(sacrebleu.corpus_chrf(hypotheses, [references]).score, 2),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--set", dest="changes", action="append", default=[], help="a recipe key=value")
    args = parser.parse_args()
    recipe = recipes.load("translate", args.changes)
    t, data = recipe["train"], prepare(recipe, print)
    sizes = [data.tokenizers[k].vocabulary_size() for k in ("source", "target")]
    translator = Translator(*sizes, recipe["model"])
    translator.compile(t["learning_rate"])
    examples = {k: data.examples(k) for k in ("train", "validation")}
    validation = text.batches(
        examples["validation"], batch_size=t["batch_size"], shuffle=0, seed=t["seed"], max_length=data.max_tokens
    )
    greedy = signatures(translator, data.tokenizers, recipe)["translate_greedy"][0]
    cpu, wall = 0.0, 0.0
    batches = run.training_batches(examples["train"], data, t)
    for epoch in range(args.epochs):
        start, cpu_start = time.perf_counter(), time.process_time()

        def train(_, epoch=epoch):  # the epoch's own order, as the run's
            return batches(epoch)

        settings = {**t, "epochs": 1, "patience": args.epochs}
        with tempfile.TemporaryDirectory() as workdir:
            history = training.fit(translator.model, train, validation, settings, workdir, restore_best=False)
        wall, cpu = wall + time.perf_counter() - start, cpu + time.process_time() - cpu_start  # training only
        row = {
            "epoch": epoch + 1,
            "train_cpu_s": round(cpu, 1),
            "train_wall_s": round(wall, 1),
            "load": round(os.getloadavg()[0], 1),
            "val_loss": round(history["val_loss"][-1], 3),
            **validation_scores(greedy, data),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
