"""What a data spec names, shared by the readers (`stream` for rows of text, `series` for timed readings).

A spec is one of
  shipped:NAME           a dataset shipped in nlpapps/data/shipped
  tfds:NAME[/CONFIG]     a tensorflow-datasets name
  path/to/file           a user's .csv, .tsv or .jsonl file (optionally .gz)
  path/to/folder/        one sub-folder per class, one .txt file per document
"""

import math
from pathlib import Path

from nlpapps.errors import UserError

SHIPPED = Path(__file__).parent / "shipped"
SPLITS = ("train", "validation", "test")


def path_of(spec, suffixes=(".tsv.gz",)):
    """The file a spec names: `shipped:NAME` is NAME with the first of `suffixes` that is shipped;
    any other spec is a path of the user's."""
    if not spec.startswith("shipped:"):
        return Path(spec)
    name = spec[len("shipped:") :]
    for suffix in suffixes:
        if (SHIPPED / f"{name}{suffix}").is_file():
            return SHIPPED / f"{name}{suffix}"
    names = sorted({p.name.split(".")[0] for suffix in suffixes for p in SHIPPED.glob(f"*{suffix}")})
    raise UserError(f"no shipped dataset {name!r}; shipped: {', '.join(names)}")


def folder_columns(columns, optional):
    """What a folder source reads for each canonical column: the file's text, or its class folder."""
    return {k: "text" if k == "text" else "" if k in optional else "label" for k in columns}


def number(value):
    """The finite number a value (a string, a number, None) holds, or None."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def is_number(value):
    return number(value) is not None
