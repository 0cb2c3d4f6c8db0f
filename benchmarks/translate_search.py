"""Search settings of an exported translation model, compared on its validation split (defaults are
chosen there, never on the test split): BLEU and chrF (cased, and case-insensitive), the share of
outputs repeating a 3-gram, for each value of a decode setting, with the model's weights as
trained. The test split gives the export's own figures (`metadata.json`); `--split test` scores it
again under other settings.

    python benchmarks/translate_search.py [--model saved_models/translate/N] \
        [--setting decode.no_repeat_ngram --values 0,2,3,4] [--split validation]
"""

import argparse
import json
import time
from pathlib import Path

from nlpapps import evaluation, export
from nlpapps.tasks.translate import evaluation as report
from nlpapps.tasks.translate import preprocessor, serving


class Split:
    """What `report.score_split` reads of the data: the pairs, and the training sources' words."""

    def __init__(self, recipe):
        self.source = preprocessor.pair_source(recipe["data"])
        training = [s for columns in self.source.batches(0) for s in columns[0]]
        self.known_words = {w for s in training for w in preprocessor.WORD.findall(s)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="an export folder; default: the newest saved_models/translate")
    parser.add_argument("--setting", default="decode.no_repeat_ngram", help="the recipe key to vary")
    parser.add_argument("--values", default="0,2,3,4", help="its values, comma-separated (JSON values)")
    parser.add_argument("--split", default="validation", choices=["validation", "test"])
    args = parser.parse_args()
    path = Path(args.model) if args.model else export.latest("saved_models", "translate")
    rows = []
    for text in args.values.split(","):
        value = json.loads(text)
        translator, tokenizers, recipe = serving.restore(path, **{args.setting: value})
        functions = serving.signatures(translator, tokenizers, recipe)
        start = time.perf_counter()
        results, references, _, _ = report.score_split(functions, Split(recipe), args.split, recipe)
        for system, r in results.items():
            if system != "copy the source":
                rows.append({args.setting: text, "system": system, **r, "seconds": time.perf_counter() - start})
    rows.append({"system": "references", "repeated_3gram_%": references})
    print(f"{path}: {args.split} split, {rows[0]['sentences']} pairs")
    columns = [args.setting, "system", "bleu", "chrf", "bleu_uncased", "chrf_uncased", "repeated_3gram_%"]
    print(evaluation.table(rows, columns))
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
