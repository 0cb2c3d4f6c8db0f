"""Do generated first names read as their locale? A classifier trained by `nlpapps run classify`
on the shipped names (each name written as its letters, "m a r i e", so that the classifier's words
are letters and its bigrams letter pairs) labels 200 names generated for each locale by the names
export; the share it assigns to the requested locale stands beside its accuracy on the real names
of its own test split, and beside the share of generated names not in the locale's training list.

    python benchmarks/generate_names.py [--names saved_models/names/N] [--output saved_models]

It trains the classifier (recipe classify, its defaults) into --output as the model "names_letters".
"""

import argparse
import csv
import gzip
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import tensorflow as tf

from nlpapps import evaluation, export
from nlpapps.data import sources


def letters(name):
    return " ".join("_" if c == " " else c for c in name)


def train_classifier(output):
    """`nlpapps run` of a classify recipe on the names as letters; returns its export."""
    folder = Path(tempfile.mkdtemp())
    table = folder / "names_letters.csv"
    with gzip.open(sources.SHIPPED / "first_names.tsv.gz", "rt", encoding="utf-8") as f, open(table, "w") as out:
        writer = csv.writer(out)
        writer.writerow(["letters", "locale"])
        for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            writer.writerow([letters(row["name"]), row["locale"]])
    recipe = folder / "names_letters.toml"
    recipe.write_text(f'task = "classify"\n[data]\nsource = "{table}"\ntext = "letters"\nlabel = "locale"\n')
    exe = Path(sys.executable).parent / "nlpapps"
    subprocess.run([str(exe), "run", str(recipe), "--output", output], check=True)
    return export.latest(output, "names_letters")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--names", help="the names export (default: the newest saved_models/names)")
    parser.add_argument("--output", default="saved_models")
    parser.add_argument("--per-locale", type=int, default=200)
    args = parser.parse_args()
    names_path = Path(args.names) if args.names else export.latest("saved_models", "names")
    names_meta = export.metadata(names_path, "generate")
    classifier = train_classifier(args.output)
    real = export.metadata(classifier)["metrics"]["headline"]
    sample = tf.saved_model.load(str(names_path)).signatures["serving_default"]
    judge = tf.saved_model.load(str(classifier)).signatures["serving_default"]
    locales = names_meta["conditions"]["locale"]["values"]
    novelty = {row["group"]: 1 - row["copies"] for row in names_meta["metrics"]["generated"]}
    rows = []
    for i, locale in enumerate(locales):
        out = sample(
            locale=tf.constant([locale]),
            temperature=tf.constant(1.0),
            seed=tf.constant(i, tf.int64),
            count=tf.constant(args.per_locale),
        )
        names = [t.decode("utf-8") for t in out["text"].numpy()]
        labels = judge(text=tf.constant([letters(n) for n in names]))["label"].numpy()
        hit = sum(label.decode() == locale for label in labels) / len(names)
        row = {"locale": locale, "generated": len(names), "assigned_to_it": hit}
        rows.append({**row, "not_in_training": novelty[locale]})
    rows.append(
        {
            "locale": "all",
            "generated": sum(r["generated"] for r in rows),
            "assigned_to_it": sum(r["assigned_to_it"] for r in rows) / len(rows),
            "not_in_training": novelty["all"],
        }
    )
    print(f"names export {names_path}; classifier {classifier}; load average {os.getloadavg()[0]:.1f}")
    print(evaluation.table(rows, list(rows[0])))
    print("classifier on the real names of its test split: " + json.dumps(real))


if __name__ == "__main__":
    main()
