"""Sentiment on validation rows, and on a domain it never trained on, beside VADER on the same rows.

    python benchmarks/sentiment_domains.py [--held-out movie|product|tweet] [--set key=value ...]

Without --held-out: trains the sentiment recipe (with the --set changes) as `nlpapps run sentiment`
does and prints the validation split's table (all texts, then per domain): the figures recipe
defaults are chosen on. With --held-out DOMAIN: trains on the other domains only (their training
rows; early stopping on their validation rows) and prints the table of every row of DOMAIN (its
training, validation and test splits), which the model never saw: the out-of-domain check.
"""

import argparse
import tempfile

import tensorflow as tf

from nlpapps import recipes, training
from nlpapps.evaluation import table
from nlpapps.tasks.sentiment import build, lexicon
from nlpapps.tasks.sentiment.evaluation import test_rows
from nlpapps.tasks.sentiment.labels import Labels
from nlpapps.tasks.text import data as text_data
from nlpapps.tasks.text import fit
from nlpapps.tasks.text.model import words_of


def restricted(targets, held_out, inside):
    """`targets` keeping only the rows of the domain `held_out` (inside) or only the others."""

    def keep(columns):
        y, kept = targets(columns)
        match = tf.equal(columns["domain"], held_out)
        return y, kept & (match if inside else ~match)

    return keep


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--held-out", help="a domain to leave out of training and score on")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a recipe change")
    args = parser.parse_args()
    recipe = recipes.load("sentiment", args.set)
    m, t = recipe["model"], recipe["train"]
    training.seed_everything(t["seed"])
    data = text_data.prepare(recipe, print)
    labels = Labels.of(data, recipe["data"], print)
    words = words_of(data.vectorizer, m, print, lexicon.valences if m["lexicon"] == "vader" else None)
    rules = lexicon.rules_of(data.vectorizer, m)
    model = build(data.vectorizer.vocabulary_size(), labels.classes, labels.scored, m, t, words, rules)
    targets = labels.targets_fn()
    train_on = restricted(targets, args.held_out, inside=False) if args.held_out else targets
    with tempfile.TemporaryDirectory() as output:
        fit.fit(model, data, train_on, recipe, output)
    if args.held_out:
        rows = test_rows(model, data, labels, ("train", "validation", "test"), restricted(targets, args.held_out, True))
        print(f"\nheld-out domain {args.held_out}: every row (trained on the other domains only)")
    else:
        rows = test_rows(model, data, labels, ("validation",))
        print("\nvalidation split")
    print(table(rows, list(rows[0])))
    print("settings: " + (" ".join(args.set) or "the recipe's defaults"))


if __name__ == "__main__":
    main()
