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

from nlpapps.errors import UserError, listing

SHIPPED = Path(__file__).parent / "shipped"
SPLITS = ("train", "validation", "test")
# tfds datasets name their fields differently; these are tried when the asked-for name is absent.
TFDS_TEXT_FIELDS = ("text", "sentence", "content", "description", "review", "document", "question")
TFDS_LABEL_FIELDS = ("label", "label_coarse", "topic")
csv.field_size_limit(2**31 - 1)  # a text may be longer than the csv module's default 128 KiB


def load(
    spec,
    columns,
    *,
    optional=(),
    fractions=(0.8, 0.1, 0.1),
    seed=0,
    max_bad_rows=0.01,
    log=None,
    notes=None,
    texts=("text",),
):
    """Splits of `spec` with `columns` = {canonical name: source column}; `texts` names the free-text
    columns (empty ones are the caller's to skip and count).

    A column set to '' is not read; a canonical name in `optional` is left out when its column is absent.
    Rows of a file that do not fit (see `check_rows`) are skipped and reported through `log` when
    they are at most `max_bad_rows` of all rows, refused otherwise; `notes` (a dict), when given,
    receives how many were skipped and their first line numbers.
    """
    if spec.startswith("tfds:"):
        splits = _tfds(spec[5:], columns, optional, fractions, seed)
    else:
        path = SHIPPED / f"{spec[8:]}.tsv.gz" if spec.startswith("shipped:") else Path(spec)
        if spec.startswith("shipped:") and not path.is_file():
            names = ", ".join(sorted(p.name.split(".")[0] for p in SHIPPED.glob("*.tsv.gz")))
            raise UserError(f"no shipped dataset {spec[8:]!r}; shipped: {names}")
        if path.is_dir():  # a folder has text and label (its sub-folder) whatever the recipe's names
            table, lines, misfits = _folder(path), None, []
            columns = folder_columns(columns, optional)
        else:
            table, lines, misfits = _file(path)
        chosen = _select(table, columns, optional, spec)
        if lines is not None:
            chosen = check_rows(chosen, columns, lines, misfits, spec, max_bad_rows, log, notes, texts)
        splits = split(chosen, fractions, seed)
    return splits


def folder_columns(columns, optional):
    """What a folder source reads for each canonical column: the file's text, or its class folder."""
    return {k: "text" if k == "text" else "" if k in optional else "label" for k in columns}


def _is_number(value):
    try:
        return np.isfinite(float(value))
    except ValueError:
        return False


def check_rows(table, columns, lines, misfits, origin, max_bad_rows, log, notes, texts=("text",)):
    """Drop the rows that do not fit their columns, or refuse when there are too many of them.

    A row does not fit when it has another number of fields than the header (`misfits`: (first
    line, lines spanned, why) of each), or when one of its values, other than the `texts`, is empty, or
    is not a number in a column that is numeric. A column is numeric when at least 90 % of its
    values are numbers: its kind is decided from all of it, not from its first rows.
    """
    n = len(lines)
    bad = np.zeros(n, dtype=bool)
    why = [""] * n
    for name, values in table.items():
        if name in texts:
            continue  # empty texts are skipped and counted where texts are read
        numeric = np.array([_is_number(v) for v in values], dtype=bool)
        misfit = ~numeric if numeric.mean() >= 0.9 else np.array([not str(v).strip() for v in values], dtype=bool)
        for i in np.flatnonzero(misfit & ~bad):
            value = str(values[i])
            why[i] = f"{columns[name]} " + ("empty" if not value.strip() else f"{value[:20]!r} is not a number")
        bad |= misfit
    found = [(int(line), 1, reason) for line, reason, b in zip(lines, why, bad) if b] + list(misfits)
    if not found:
        return table
    found.sort()
    count, total = sum(span for _, span, _ in found), n + sum(span for _, span, _ in misfits)
    shown = "; ".join(
        f"line {line}{f'-{line + span - 1}' if span > 1 else ''}: {reason}" for line, span, reason in found[:5]
    ) + ("; ..." if len(found) > 5 else "")
    if count > max_bad_rows * total:
        raise UserError(
            f"{origin}: {count} of {total} rows do not fit ({shown}); more than data.max_bad_rows"
            f" = {max_bad_rows} allows: fix the data, or raise the threshold"
        )
    if log:
        log(f"{origin}: skipped {count} {'rows that do' if count > 1 else 'row that does'} not fit ({shown})")
    if notes is not None:
        notes.update(skipped_bad_rows=count, bad_lines=[line for line, _, _ in found[:20]])
    return {k: v[~bad] for k, v in table.items()}


def _select(table, columns, optional, origin):
    if not table:
        raise UserError(f"{origin}: no rows")
    available = list(table)
    chosen = {}
    for name, column in columns.items():
        if column in table:
            chosen[name] = table[column]
        elif column and name not in optional:
            raise UserError(f"{origin}: no column {column!r}; columns are: {listing(available)}")
    return chosen


def split(table, fractions, seed):
    """A seeded, deterministic shuffle cut into train/validation/test by `fractions`."""
    n = len(next(iter(table.values())))
    order = np.random.default_rng(seed).permutation(n)
    cuts = np.cumsum(np.array(fractions[:2]) / sum(fractions) * n).round().astype(int)
    parts = np.split(order, cuts)
    return {name: {k: v[idx] for k, v in table.items()} for name, idx in zip(SPLITS, parts)}


def _file(path):
    """The file's columns, each row's line number, and the rows with a wrong number of fields."""
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
    misfits = []
    if kind in (".jsonl", ".json"):
        numbered = [(i, line) for i, line in enumerate(text.splitlines(), 1) if line.strip()]
        try:
            rows = [json.loads(line) for _, line in numbered]
        except json.JSONDecodeError as e:
            raise UserError(f"{path}: not JSON lines ({e})") from None
        if any(not isinstance(r, dict) for r in rows):
            raise UserError(f"{path}: every JSON line must be an object")
        lines = [i for i, _ in numbered]
    elif kind in (".csv", ".tsv", ".txt"):
        rows, lines, misfits = _delimited(path, text, kind == ".tsv")
    else:
        raise UserError(f"{path}: unsupported file type; use .csv, .tsv or .jsonl (optionally .gz)")
    if not rows:
        raise UserError(f"{path}: no rows")
    names = list(dict.fromkeys(k for r in rows for k in r if k is not None))
    table = {k: np.array(["" if r.get(k) is None else str(r.get(k)) for r in rows], dtype=object) for k in names}
    return table, np.array(lines), misfits


def _delimited(path, text, tsv):
    """Rows of a CSV (quoted fields may hold commas, quotes and newlines) or a TSV (no quoting at all:
    one row a line, a '"' is a character like any other). Rows with another number of fields than
    the header are returned apart, with their line and how many lines they span."""
    reader = csv.reader(
        io.StringIO(text), delimiter="\t" if tsv else ",", quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL
    )
    rows, lines, misfits, header, end = [], [], [], None, 0
    try:
        for record in reader:
            start, end = end + 1, reader.line_num
            if not any(field.strip() for field in record):
                continue  # blank line
            if header is None:
                header = record
            elif len(record) == len(header):
                rows.append(dict(zip(header, record)))
                lines.append(start)
            else:
                misfits.append((start, end - start + 1, f"{len(record)} fields where the header has {len(header)}"))
    except csv.Error as e:
        raise UserError(f"{path}: line {reader.line_num}: cannot read ({e})") from None
    return rows, lines, misfits


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
    import logging

    import tensorflow_datasets as tfds

    # tfds' own warnings, retries and progress bars would bury our one-line error; stdout keeps its news.
    tfds.disable_progress_bar()
    for logger in ("absl", "urllib3", "tensorflow_datasets"):
        logging.getLogger(logger).setLevel(logging.ERROR)
    try:
        splits, info = tfds.load(name, split=None, with_info=True)
    except Exception as e:  # tfds raises many types: unknown name, no download, bad config
        raise UserError(f"tfds:{name}: cannot load ({str(e).splitlines()[0]})") from None
    features = info.features
    mapping = {}
    for canonical, column in columns.items():
        fallbacks = {"text": TFDS_TEXT_FIELDS, "label": TFDS_LABEL_FIELDS, "target": TFDS_LABEL_FIELDS}.get(
            canonical, ()
        )
        found = column if column in features else next((f for f in fallbacks if f in features), None)
        if found is None and column and canonical not in optional:
            raise UserError(f"tfds:{name}: no field {column!r}; fields are: {', '.join(features)}")
        if found is not None and column:
            mapping[canonical] = found
    out = {}
    for split_name, ds in splits.items():
        rows = list(tfds.as_numpy(ds))
        out[split_name] = {
            c: np.array([_tfds_value(features[f], r[f]) for r in rows], dtype=object) for c, f in mapping.items()
        }
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
