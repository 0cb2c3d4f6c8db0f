"""The texts and their conditions, read from any source `stream.Source` reads, and the character
vocabulary: ids 0 padding, 1 a character too rare to learn (or unseen), 2… the characters, most
frequent first, then the start and the end of a text."""

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from nlpapps.data import stream
from nlpapps.errors import UserError

# Names a condition cannot take: the sampling settings share the exported signature's inputs.
RESERVED = ("text", "temperature", "top_k", "top_p", "max_length", "seed", "count")


@dataclass
class Condition:
    """One condition column: a category (its training values, sorted) or a number (its training
    range, which it is scaled to -1 … 1 by, and its training mean)."""

    name: str
    kind: str  # "category" or "number"
    values: list = field(default_factory=list)
    low: float = 0.0
    high: float = 0.0
    mean: float = 0.0

    @property
    def centre(self):
        return (self.low + self.high) / 2

    @property
    def half_range(self):
        return (self.high - self.low) / 2 or 1.0

    def describe(self):
        if self.kind == "category":
            return {"kind": "category", "values": self.values}
        return {"kind": "number", "range": [self.low, self.high]}


@dataclass
class Corpus:
    """Every split's texts and condition values ({name: numpy array}), the conditions, and the
    characters the model writes."""

    splits: dict
    conditions: list
    chars: list
    skipped: dict

    @property
    def start_id(self):
        return len(self.chars) + 2

    @property
    def end_id(self):
        return self.start_id + 1

    @property
    def classes(self):
        return self.end_id + 1

    def texts(self, split):
        return [str(t) for t in self.splits[split]["text"]]

    def ids(self, texts):
        """Each text's character ids followed by the end id (lists)."""
        index = {c: i + 2 for i, c in enumerate(self.chars)}
        return [[index.get(c, 1) for c in t] + [self.end_id] for t in texts]

    def condition_inputs(self, split):
        """(category ids[rows, categories] (0: a value training never saw), numbers[rows, numbers] scaled to -1 … 1)."""
        table = self.splits[split]
        return encode_conditions(self.conditions, {c.name: table[c.name] for c in self.conditions})

    def size(self, split):
        return len(self.splits[split]["text"])


def encode_conditions(conditions, values):
    """Raw condition values ({name: array}) → the model's two condition inputs (numpy)."""
    rows = len(next(iter(values.values()))) if values else 0
    categories = [
        [c.values.index(v) + 1 if v in c.values else 0 for v in map(str, values[c.name])]
        for c in conditions
        if c.kind == "category"
    ]
    numbers = [
        (np.clip(np.asarray(values[c.name], float), c.low, c.high) - c.centre) / c.half_range
        for c in conditions
        if c.kind == "number"
    ]
    return (
        np.array(categories, np.int32).T.reshape(rows, len(categories)),
        np.array(numbers, np.float32).T.reshape(rows, len(numbers)),
    )


def check_names(names):
    """Refuse condition names that cannot be an exported input's name."""
    for name in names:
        if name in RESERVED or not name.isidentifier() or names.count(name) > 1:
            raise UserError(
                f"data.conditions: {name!r} cannot name a condition (each must be a distinct column name "
                f"made of letters, digits and _, and none of {', '.join(RESERVED)})"
            )


def load(recipe, log):
    """The recipe's source as a `Corpus`: texts longer than data.max_chars and empty ones left out."""
    d, t = recipe["data"], recipe["text"]
    names = list(d["conditions"])
    check_names(names)
    source = stream.Source(
        d["source"],
        {"text": d["text_column"], **{n: n for n in names}},
        fractions=tuple(d["split"]),
        seed=d["seed"],
    )
    profile = source.profile(1, d["max_bad_rows"], log)
    splits = {split: _rows(source, i) for i, split in enumerate(stream.SPLITS)}
    skipped = {"empty": sum(profile.empty), "too_long": 0}
    for split, table in splits.items():
        texts = np.array([" ".join(str(x).split()) for x in table["text"]], dtype=object)
        keep = np.array([0 < len(x) <= (d["max_chars"] or len(x)) for x in texts], dtype=bool)
        skipped["too_long"] += int((~keep).sum())
        splits[split] = {"text": texts[keep], **{n: np.asarray(table[n])[keep] for n in names}}
        if not keep.any():
            raise UserError(f"{d['source']}: the {split} split has no text of 1 to {d['max_chars']} characters")
    conditions = [_condition(n, splits["train"][n]) for n in names]
    counts = Counter("".join(splits["train"]["text"]))
    chars = sorted((c for c, n in counts.items() if n >= t["min_count"]), key=lambda c: (-counts[c], c))
    log(
        f"data: {d['source']} ({d['text_column']} given {', '.join(names) or 'nothing'}): "
        + ", ".join(f"{k} {len(v['text'])}" for k, v in splits.items())
        + f" texts; skipped {skipped['empty']} empty and {skipped['too_long']} over {d['max_chars']} characters; "
        + f"{len(chars)} characters (seen at least {t['min_count']} times in training); conditions: "
        + "; ".join(_shown(c) for c in conditions)
    )
    return Corpus(splits, conditions, chars, skipped)


def _rows(source, split):
    """{column: numpy array} of every fitting row of a split (an index), in file order."""
    columns = {name: [] for name in source.names}
    for batch in source.batches(split):
        for name, values in zip(source.names, batch):
            columns[name].extend(values)
    return {name: np.array(values, dtype=object) for name, values in columns.items()}


def _condition(name, values):
    try:
        numbers = np.asarray(values, dtype=float)
    except ValueError:
        numbers = None
    if numbers is not None and np.isfinite(numbers).all():
        return Condition(
            name,
            "number",
            low=float(numbers.min()),
            high=float(numbers.max()),
            mean=float(numbers.mean()),
        )
    return Condition(name, "category", values=sorted({str(v) for v in values}))


def _shown(c):
    if c.kind == "number":
        return f"{c.name} a number in [{c.low:g}, {c.high:g}]"
    shown = ", ".join(c.values[:8]) + (", …" if len(c.values) > 8 else "")
    return f"{c.name} one of {len(c.values)} ({shown})"


def examples(corpus, split):
    """(characters in: start + text, category ids, scaled numbers), characters out: text + end,
    as a tf.data dataset of single examples (the character sequences first: batches group by length)."""
    ids = corpus.ids(corpus.texts(split))
    chars_out = tf.ragged.constant(ids, dtype=tf.int32)
    chars_in = tf.ragged.constant([[corpus.start_id, *row[:-1]] for row in ids], dtype=tf.int32)
    categories, numbers = corpus.condition_inputs(split)
    ds = tf.data.Dataset.from_tensor_slices(((chars_in, categories, numbers), chars_out))
    return ds.map(lambda x, y: (tf.nest.map_structure(tf.identity, x), tf.identity(y))).cache()
