"""Write nlpapps/data/shipped/first_names.tsv.gz from Faker's person providers (MIT licence).

Faker is not a dependency of nlpapps: install the `data` extra (`pip install -e ".[data]"`, which
pins the Faker version named in PROVENANCE.md) and run `python tools/extract_names.py`. Each
locale's first names (male and female together, as its provider's `first_names` lists them),
without duplicates within a locale, sorted; a name listed by two locales is a row of each.
"""

import csv
import gzip
import importlib
from pathlib import Path

import faker

LOCALES = ("de_DE", "en_US", "es_ES", "fi_FI", "fr_FR", "it_IT", "tr_TR")
TARGET = Path(__file__).resolve().parent.parent / "nlpapps" / "data" / "shipped" / "first_names.tsv.gz"


def first_names(locale):
    provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
    return sorted({" ".join(str(name).split()) for name in provider.first_names})


def open_text(raw):
    import io

    return io.TextIOWrapper(raw, encoding="utf-8", newline="")


def main():
    rows = [(locale, name) for locale in LOCALES for name in first_names(locale)]
    # mtime 0: the same names give the same bytes
    with gzip.GzipFile(TARGET, "wb", mtime=0) as raw, open_text(raw) as f:
        writer = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, lineterminator="\n")
        writer.writerow(["locale", "name"])
        writer.writerows(rows)
    counts = {locale: sum(1 for r in rows if r[0] == locale) for locale in LOCALES}
    print(f"faker {faker.VERSION}: {len(rows)} names to {TARGET}: {counts}")


if __name__ == "__main__":
    main()
