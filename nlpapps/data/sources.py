"""Data sources behind one interface: `load(spec, columns, ...)` gives train/validation/test splits.

A spec is one of
  shipped:NAME           a dataset shipped in nlpapps/data/shipped (NAME.tsv.gz)
  tfds:NAME[/CONFIG]     a tensorflow-datasets name
  path/to/file           a user's .csv, .tsv or .jsonl file (optionally .gz)
  path/to/folder/        one sub-folder per class, one .txt file per document
Each split is a dict of numpy arrays keyed by the caller's canonical column names.
"""
import csv
import gzip
import io
import json
from pathlib import Path

import numpy as np

from nlpapps.errors import UserError

SHIPPED = Path(__file__).parent / "shipped"
SPLITS = ("train", "validation", "test")
# tfds datasets name their fields differently; these are tried when the asked-for name is absent.
TFDS_TEXT_FIELDS = ("text", "sentence", "content", "description", "review", "document", "question")
TFDS_LABEL_FIELDS = ("label", "label_coarse", "topic")


def load(spec, columns, *, optional=(), fractions=(0.8, 0.1, 0.1), seed=0):
    """Splits of `spec` with `columns` = {canonical name: source column}.

    A column set to '' is not read; a canonical name in `optional` is left out when its column is absent.
    """
    if spec.startswith("tfds:"):
        splits = _tfds(spec[5:], columns, optional, fractions, seed)
    else:
        path = SHIPPED / f"{spec[8:]}.tsv.gz" if spec.startswith("shipped:") else Path(spec)
        if spec.startswith("shipped:") and not path.is_file():
            names = ", ".join(sorted(p.name.split(".")[0] for p in SHIPPED.glob("*.tsv.gz")))
            raise UserError(f"no shipped dataset {spec[8:]!r}; shipped: {names}")
        table = _folder(path) if path.is_dir() else _file(path)
        if path.is_dir():  # a folder has text and label (its sub-folder) whatever the recipe's names
            columns = {k: "text" if k == "text" else "" if k in optional else "label" for k in columns}
        splits = split(_select(table, columns, optional, spec), fractions, seed)
    return splits


def _select(table, columns, optional, origin):
    if not table:
        raise UserError(f"{origin}: no rows")
    available = list(table)
    chosen = {}
    for name, column in columns.items():
        if column in table:
            chosen[name] = table[column]
        elif column and name not in optional:
            raise UserError(f"{origin}: no column {column!r}; columns are: {', '.join(available)}")
    return chosen


def split(table, fractions, seed):
    """A seeded, deterministic shuffle cut into train/validation/test by `fractions`."""
    n = len(next(iter(table.values())))
    order = np.random.default_rng(seed).permutation(n)
    cuts = np.cumsum(np.array(fractions[:2]) / sum(fractions) * n).round().astype(int)
    parts = np.split(order, cuts)
    return {name: {k: v[idx] for k, v in table.items()} for name, idx in zip(SPLITS, parts)}


def _file(path):
    if not path.is_file():
        raise UserError(f"data file not found: {path}")
    suffixes = [s.lower() for s in path.suffixes]
    opener = gzip.open if suffixes[-1:] == [".gz"] else open
    kind = suffixes[-2] if suffixes[-1:] == [".gz"] and len(suffixes) > 1 else suffixes[-1:] and suffixes[-1]
    try:
        with opener(path, "rb") as f:
            text = f.read().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None
    except (OSError, EOFError) as e:
        raise UserError(f"{path}: cannot read ({e})") from None
    if kind in (".jsonl", ".json"):
        try:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as e:
            raise UserError(f"{path}: not JSON lines ({e})") from None
        if any(not isinstance(r, dict) for r in rows):
            raise UserError(f"{path}: every JSON line must be an object")
    elif kind in (".csv", ".tsv", ".txt"):
        delimiter = "\t" if kind == ".tsv" else ","
        rows = list(csv.DictReader(io.StringIO(text), delimiter=delimiter))
    else:
        raise UserError(f"{path}: unsupported file type; use .csv, .tsv or .jsonl (optionally .gz)")
    if not rows:
        raise UserError(f"{path}: no rows")
    names = list(dict.fromkeys(k for r in rows for k in r if k is not None))
    return {k: np.array(["" if r.get(k) is None else str(r.get(k)) for r in rows], dtype=object)
            for k in names}


def _folder(path):
    """Folder-per-class text, as keras.utils.text_dataset_from_directory lays it out."""
    classes = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise UserError(f"{path}: a data folder needs one sub-folder per class, holding .txt files")
    texts, labels = [], []
    for folder in classes:
        for doc in sorted(folder.glob("*.txt")):
            texts.append(doc.read_bytes().decode("utf-8", errors="replace"))
            labels.append(folder.name)
    if not texts:
        raise UserError(f"{path}: the class folders hold no .txt files")
    return {"text": np.array(texts, dtype=object), "label": np.array(labels, dtype=object)}


def _tfds(name, columns, optional, fractions, seed):
    import tensorflow_datasets as tfds

    try:
        splits, info = tfds.load(name, split=None, with_info=True)
    except Exception as e:  # tfds raises many types: unknown name, no download, bad config
        raise UserError(f"tfds:{name}: cannot load ({str(e).splitlines()[0]})") from None
    features = info.features
    mapping = {}
    for canonical, column in columns.items():
        fallbacks = {"text": TFDS_TEXT_FIELDS, "label": TFDS_LABEL_FIELDS, "target": TFDS_LABEL_FIELDS}.get(canonical, ())
        found = column if column in features else next((f for f in fallbacks if f in features), None)
        if found is None and column and canonical not in optional:
            raise UserError(f"tfds:{name}: no field {column!r}; fields are: {', '.join(features)}")
        if found is not None and column:
            mapping[canonical] = found
    out = {}
    for split_name, ds in splits.items():
        rows = list(tfds.as_numpy(ds))
        out[split_name] = {c: np.array([_tfds_value(features[f], r[f]) for r in rows], dtype=object)
                           for c, f in mapping.items()}
    if "validation" not in out:
        # carve a seeded validation set from train, in the recipe's train:validation proportion
        train = split(out.pop("train"), (fractions[0], fractions[1], 0.0), seed)
        out["train"], out["validation"] = train["train"], train["validation"]
    if "test" not in out:
        raise UserError(f"tfds:{name}: has no test split")
    return {k: out[k] for k in SPLITS}


def _tfds_value(feature, value):
    import tensorflow_datasets as tfds

    if isinstance(feature, tfds.features.ClassLabel):
        return feature.int2str(int(value))
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)
