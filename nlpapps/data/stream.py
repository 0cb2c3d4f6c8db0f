"""Sources read as a stream: rows go by once per pass, in batches, and are never held whole.

`Source(spec, columns, ...)` reads the specs of `sources` (shipped:NAME, tfds:NAME, a .csv/.tsv/.jsonl
file, optionally .gz, a folder with one sub-folder per class). Each row's split is
decided by a seeded hash of its free text (`split_of`): the same row always lands in the same split,
whatever the order of the file, and no permutation of all rows is needed. Sources with splits of
their own (tfds) keep them.

One pass (`Source.profile`) learns what training needs to know before it starts, in bounded
memory: the column kinds (a column is numeric when 90 % of all its values are numbers), the rows
that do not fit (counted, refused above `data.max_bad_rows`), the label counts per split, and a
bounded random sample of training texts for the vocabulary. `Source.batches(split)` then gives a
split's fitting rows, as lists of `BATCH` rows, and `dataset` makes them a tf.data pipeline of
examples that a task's own function encodes in parallel.

Rows that do not fit are skipped and counted, never fatal: another number of fields than the header,
bytes that are not UTF-8, a line of JSONL that is not an object, an empty value in a column other
than the free texts, a value that is not a number in a numeric column. Rows with an empty text (any
of the free-text columns: a translation pair has two) and rows with a text longer than its word limit
are skipped and counted apart.
"""

import csv
import gzip
import hashlib
import io
import json
import random
import zlib
from collections import Counter

from nlpapps.data import sources
from nlpapps.errors import UserError, excerpt, listing

SPLITS = sources.SPLITS
BATCH = 256  # rows per element handed to tf.data: one Python call per batch, not per row
MAX_LABELS = 100_000  # distinct values counted per column; a column with more is not a label set
EMPTY, LONG = "empty", "long"  # rows whose texts are skipped and counted apart from the bad rows
# tfds datasets name their fields differently; these are tried when the asked-for name is absent.
TFDS_TEXT_FIELDS = ("text", "sentence", "content", "description", "review", "document", "question")
TFDS_LABEL_FIELDS = ("label", "label_coarse", "topic")
csv.field_size_limit(2**31 - 1)  # a text may be longer than the csv module's default 128 KiB


def split_of(key, seed, cuts):
    """0, 1 or 2 (train, validation, test) for a row whose free text is `key`: a seeded hash of the
    text (CRC-32 of the seed then the text: fast, stable across runs and machines) mapped to [0, 1)
    and cut at `cuts` (the cumulative train and validation fractions)."""
    u = zlib.crc32(key.encode("utf-8", "surrogateescape"), _seeded(seed)) / 2.0**32  # as _Tsv.rows
    return 0 if u < cuts[0] else 1 if u < cuts[1] else 2


def _seeded(seed, memo={}):  # noqa: B006 - computed once per seed
    if seed not in memo:
        memo[seed] = zlib.crc32(hashlib.sha256(str(seed).encode()).digest())
    return memo[seed]


def cuts_of(fractions):
    total = sum(fractions)
    return (fractions[0] / total, (fractions[0] + fractions[1]) / total)


def _flag(value, memo={}):  # noqa: B006 - the memo is the point: label columns repeat few values
    """'e' for an empty value, 'n' for a number, 't' for other text."""
    flag = memo.get(value)
    if flag is None:
        flag = "e" if not value.strip() else "n" if sources.is_number(value) else "t"
        if len(memo) < MAX_LABELS:
            memo[value] = flag
    return flag


class Source:
    """A source's rows of the caller's `columns` ({canonical name: source column}); `texts` names
    the free-text columns (the first one decides the split). A canonical name in `optional` is left
    out when its column is absent; a column set to '' is not read. `max_words` ({text column:
    limit}, 0 for none) leaves out rows with a text of more whitespace-separated words."""

    def __init__(
        self, spec, columns, *, optional=(), texts=("text",), fractions=(0.8, 0.1, 0.1), seed=0, max_words=None
    ):
        self.spec, self.seed, self.cuts = spec, seed, cuts_of(fractions)
        self.columns = dict(columns)
        self.fractions = fractions
        if spec.startswith("tfds:"):
            self._tfds = _Tfds(spec[5:], columns, optional)
            self.names = list(self._tfds.fields)
            self.path = None
        else:
            self._tfds = None
            path = sources.path_of(spec)
            if path.is_dir():
                columns = self.columns = sources.folder_columns(columns, optional)
                self.reader = _Folder(path)
            else:
                self.reader = _reader(path)
            self.path = path
            header = self.reader.header()
            self.names, self.positions = [], []
            for name, column in columns.items():
                if column in header:
                    self.names.append(name)
                    self.positions.append(header.index(column))
                elif column and name not in optional:
                    raise UserError(f"{spec}: no column {column!r}; columns are: {listing(header)}")
        self.texts = [n for n in self.names if n in texts]
        self._text_at = [self.names.index(n) for n in self.texts]
        self._limits = [
            (self.names.index(n), limit) for n, limit in (max_words or {}).items() if limit and n in self.texts
        ]
        self.checked = [n for n in self.names if n not in texts]  # values that must not be empty
        self.numeric = dict.fromkeys(self.checked, False)  # decided by `profile`
        self._checked_at = [self.names.index(n) for n in self.checked]

    def records(self, split=None):
        """(line, split index, values or None, why) of every row; values is None for a row that
        cannot be read (wrong field count, not UTF-8, not a JSON object) and `why` says why."""
        if self._tfds is not None:
            yield from self._tfds.records(split, self.seed, self.fractions)
            return
        positions = self.positions
        key_at = positions[self.names.index(self.texts[0])] if self.texts else None
        for line, row_split, fields, why in self.reader.rows(key_at, self.seed, self.cuts, split):
            if fields is None:
                yield line, row_split, None, why
            else:
                yield line, row_split, [fields[p] for p in positions], ""

    def _flags(self, values):
        """Per checked column: 'e' empty, 'n' a number, 't' other text."""
        return tuple(map(_flag, [values[i] for i in self._checked_at]))

    def _fits(self, flags):
        return not any(f == "e" or (f == "t" and self.numeric[n]) for n, f in zip(self.checked, flags))

    def _texts_state(self, values):
        """'' for texts that can be used, EMPTY for a row with an empty text, LONG for one with a
        text over its word limit."""
        if not all(values[i].strip() for i in self._text_at):
            return EMPTY
        if any(len(values[i].split()) > limit for i, limit in self._limits):
            return LONG
        return ""

    def profile(self, sample_rows, max_bad_rows, log=None):
        """One pass over every row: see `Profile`. Decides the column kinds and refuses the data
        when more than `max_bad_rows` of its rows do not fit."""
        p = Profile(self.names, self.texts)
        rng = random.Random(self.seed)
        text_at = self._text_at
        counted = [(self.names.index(n), n) for n in self.checked]
        counters = [[(i, p.values[n][split]) for i, n in counted] for split in range(3)]
        seen = 0
        for line, split, values, why in self.records():
            if values is None:
                if len(p.misfits) < 5:
                    p.misfits.append((line, why))
                p.misfit_count += 1
                continue
            flags = self._flags(values)
            state = self._texts_state(values)
            key = (split, state, flags)
            p.patterns[key] += 1
            if p.patterns[key] <= 5:
                p.first.setdefault(flags, []).append((line, [values[i][:20] for i, _ in counted]))
            if state or "e" in flags:
                continue
            for i, counter in counters[split]:
                if len(counter) < MAX_LABELS or values[i] in counter:
                    counter[values[i]] += 1
                else:
                    p.too_many.add(self.names[i])
            if split == 0 and text_at:  # reservoir sample: every training row equally likely
                if seen < sample_rows:
                    for i, sample in zip(text_at, p.samples.values()):
                        sample.append(values[i])
                else:
                    j = int(rng.random() * (seen + 1))
                    if j < sample_rows:
                        for i, sample in zip(text_at, p.samples.values()):
                            sample[j] = values[i]
                seen += 1
        p.settle(self, max_bad_rows, log)
        return p

    def batches(self, split):
        """The fitting rows of `split` with non-empty texts within their word limits, as tuples of
        column lists of up to BATCH rows (a generator for tf.data.Dataset.from_generator)."""
        columns = [[] for _ in self.names]
        fits = {}
        for _, row_split, values, _ in self.records(split):
            if values is None or row_split != split or self._texts_state(values):
                continue
            flags = self._flags(values)
            if flags not in fits:
                fits[flags] = self._fits(flags)
            if not fits[flags]:
                continue
            for column, value in zip(columns, values):
                column.append(value)
            if len(columns[0]) == BATCH:
                yield tuple(columns)
                columns = [[] for _ in self.names]
        if columns[0]:
            yield tuple(columns)


class Profile:
    """What one pass over a source learned.
    patterns: (split, texts' state, flags) -> rows; first: flags -> first (line, values) of that kind;
    values: column -> per split Counter of its values (fitting rows);
    samples: text column -> a seeded random sample of the fitting training rows' texts, row for row
    (sample: the first text column's); after `settle`: sizes, empty (rows with an empty text),
    too_long (rows with a text over its word limit), bad_rows."""

    def __init__(self, names, texts=()):
        self.patterns, self.first, self.misfits, self.misfit_count = Counter(), {}, [], 0
        self.values = {n: [Counter(), Counter(), Counter()] for n in names}
        self.samples = {n: [] for n in texts}
        self.too_many, self.sample = set(), next(iter(self.samples.values()), [])

    def settle(self, source, max_bad_rows, log):
        """Decide column kinds from all their values, then count and report the rows that do not fit."""
        checked = source.checked
        for i, name in enumerate(checked):
            total = sum(c for (_, _, flags), c in self.patterns.items())
            numbers = sum(c for (_, _, flags), c in self.patterns.items() if flags[i] == "n")
            source.numeric[name] = total > 0 and numbers >= 0.9 * total
            if source.numeric[name]:  # values that are not numbers are bad rows, not labels
                for counter in self.values[name]:
                    for value in [v for v in counter if not sources.is_number(v)]:
                        del counter[value]
        fits = {flags: source._fits(flags) for _, _, flags in self.patterns}
        self.sizes, self.empty, self.too_long = [0, 0, 0], [0, 0, 0], [0, 0, 0]
        bad = self.misfit_count
        for (split, state, flags), count in self.patterns.items():
            if not fits[flags]:
                bad += count
            elif state:
                (self.empty if state == EMPTY else self.too_long)[split] += count
            else:
                self.sizes[split] += count
        self.bad_rows, self.rows = bad, sum(self.patterns.values()) + self.misfit_count
        if not self.rows:
            raise UserError(f"{source.spec}: no rows")
        if not bad:
            return
        found = [(line, why) for line, why in self.misfits]
        for flags, rows in self.first.items():
            if not fits[flags]:
                for line, values in rows:
                    i = next(i for i, f in enumerate(flags) if f == "e" or (f == "t" and source.numeric[checked[i]]))
                    value = values[i]
                    found.append(
                        (
                            line,
                            f"{source.columns[checked[i]]} "
                            + ("empty" if flags[i] == "e" else f"'{excerpt(value)}' is not a number"),
                        )
                    )
        found.sort()
        shown = "; ".join(f"line {line}: {why}" for line, why in found[:5]) + ("; ..." if bad > 5 else "")
        if bad > max_bad_rows * self.rows:
            raise UserError(
                f"{source.spec}: {bad} of {self.rows} rows do not fit ({shown}); more than data.max_bad_rows"
                f" = {max_bad_rows} allows: fix the data, or raise the threshold"
            )
        if log:
            log(f"{source.spec}: skipped {bad} {'rows that do' if bad > 1 else 'row that does'} not fit ({shown})")
        self.bad_lines = [line for line, _ in found[:20]]


def dataset(source, split, encode, cache):
    """The fitting rows of `split` (an index) as a tf.data pipeline of examples. `encode(columns)`
    maps a batch's string columns ({canonical name: string[batch]}) to a tuple of batched tensors,
    ragged ones for token ids, with the same rows; it runs in parallel inside the pipeline. With
    `cache`, the examples are kept in memory after the first pass (for splits that fit there)."""
    import tensorflow as tf

    names = source.names
    ds = tf.data.Dataset.from_generator(
        lambda: source.batches(split), output_signature=tuple(tf.TensorSpec([None], tf.string) for _ in names)
    )

    @tf.autograph.experimental.do_not_convert  # tensor ops only: nothing for AutoGraph to convert
    def encoded(*values):
        return encode(dict(zip(names, values)))

    @tf.autograph.experimental.do_not_convert
    def plain(*example):  # rows of a ragged batch come out ragged-typed: this makes them plain tensors
        return tf.nest.map_structure(tf.identity, example)

    ds = ds.map(encoded, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
    ds = ds.map(plain, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.cache() if cache else ds


# ----------------------------------------------------------------------------------------- readers


def _reader(path):
    if not path.is_file():
        raise UserError(f"data file not found: {path}")
    suffixes = [s.lower() for s in path.suffixes]
    kind = suffixes[-2] if suffixes[-1:] == [".gz"] and len(suffixes) > 1 else suffixes[-1:] and suffixes[-1]
    if kind in (".jsonl", ".json"):
        return _JsonLines(path)
    if kind == ".tsv":
        return _Tsv(path)
    if kind in (".csv", ".txt"):
        return _Csv(path)
    raise UserError(f"{path}: unsupported file type; use .csv, .tsv or .jsonl (optionally .gz)")


class _Rows:
    """`rows`: (line, split, fields or None, why) of a reader's rows, of one split (`only`) or of
    all, the split from the hash of the field at `key_at`; unreadable rows come with all."""

    def rows(self, key_at, seed, cuts, only=None):
        for number, fields, why in self._rows():
            if fields is None:
                if only is None:
                    yield number, None, None, why
                continue
            split = split_of(fields[key_at] if key_at is not None else "", seed, cuts)
            if only is None or split == only:
                yield number, split, fields, ""


class _File(_Rows):
    def __init__(self, path):
        self.path = path
        self.gz = path.suffix.lower() == ".gz"

    def open(self):
        try:
            return gzip.open(self.path, "rb") if self.gz else open(self.path, "rb")
        except OSError as e:
            raise UserError(f"{self.path}: cannot read ({e})") from None

    def lines(self):
        """(line number, bytes without the line end) of every line; read errors are one line."""
        try:
            with self.open() as f:
                for number, line in enumerate(f, 1):
                    yield number, line.rstrip(b"\r\n")
        except (OSError, EOFError) as e:
            raise UserError(f"{self.path}: cannot read ({e})") from None


def _decode(raw, first):
    try:
        return raw.decode("utf-8-sig" if first else "utf-8")
    except UnicodeDecodeError:
        return None


class _Tsv(_File):
    """Tab-separated, no quoting at all: one row a line, a '"' is a character like any other."""

    def header(self):
        for number, raw in self.lines():
            text = _decode(raw, number == 1)
            if text is None:
                raise UserError(f"{self.path}: line {number}: the header is not UTF-8 text")
            if text.strip():
                self._header_line = number
                self._width = len(text.split("\t"))
                return text.split("\t")
        raise UserError(f"{self.path}: no rows")

    def rows(self, key_at, seed, cuts, only=None):
        """As `_Rows.rows`, faster: the split comes from the text's bytes, so the rows of other
        splits are passed over without being decoded."""
        start, width, init = self._header_line, self._width, _seeded(seed)
        train, validation = cuts[0] * 2.0**32, cuts[1] * 2.0**32
        for number, raw in self.lines():
            if number <= start or not raw.strip():
                continue
            fields = raw.split(b"\t")
            if len(fields) != width:
                if only is None:
                    yield number, None, None, f"{len(fields)} fields where the header has {width}"
                continue
            h = zlib.crc32(fields[key_at], init) if key_at is not None else init
            split = 0 if h < train else 1 if h < validation else 2
            if only is not None and split != only:
                continue
            try:
                yield number, split, raw.decode("utf-8").split("\t"), ""
            except UnicodeDecodeError:
                if only is None:
                    yield number, None, None, "not UTF-8 text"


class _Csv(_File):
    """Comma-separated with quoting: a quoted field may hold commas, quotes and newlines."""

    def _records(self):
        with self.open() as f:
            # Bytes that are not UTF-8 become lone surrogates here, and make their row a bad one.
            text = io.TextIOWrapper(f, encoding="utf-8-sig", errors="surrogateescape", newline="")
            reader = csv.reader(text)
            end = 0
            try:
                for record in reader:
                    start, end = end + 1, reader.line_num
                    yield start, end, record
            except csv.Error as e:
                raise UserError(f"{self.path}: line {reader.line_num}: cannot read ({e})") from None
            except (OSError, EOFError) as e:  # a truncated .gz, a disk error
                raise UserError(f"{self.path}: cannot read ({e})") from None

    def header(self):
        for _, end, record in self._records():
            if any(field.strip() for field in record):
                self._header_end, self._width = end, len(record)
                return record
        raise UserError(f"{self.path}: no rows")

    def _rows(self):
        for start, end, record in self._records():
            if end <= self._header_end or not any(field.strip() for field in record):
                continue
            if len(record) != self._width:
                yield start, None, f"{len(record)} fields where the header has {self._width}"
                continue
            try:
                "".join(record).encode("utf-8")
            except UnicodeEncodeError:
                yield start, None, "not UTF-8 text"
                continue
            yield start, record, ""


class _JsonLines(_File):
    """One JSON object a line; its keys are the columns (the first 1000 rows name them)."""

    def header(self):
        keys = {}
        for _, fields, _ in self._objects(limit=1000):
            if fields is not None:
                keys.update(dict.fromkeys(fields))
        if not keys:
            raise UserError(f"{self.path}: no rows")
        self._keys = list(keys)
        return self._keys

    def _objects(self, limit=None):
        for number, raw in self.lines():
            if limit is not None and number > limit:
                return
            if not raw.strip():
                continue
            text = _decode(raw, number == 1)
            if text is None:
                yield number, None, "not UTF-8 text"
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError:
                yield number, None, "not JSON"
                continue
            if not isinstance(row, dict):
                yield number, None, "not a JSON object"
                continue
            yield number, row, ""

    def _rows(self):
        keys = self._keys
        for number, row, why in self._objects():
            if row is None:
                yield number, None, why
            else:
                yield number, ["" if row.get(k) is None else str(row.get(k)) for k in keys], ""


class _Folder(_Rows):
    """Folder-per-class text, as keras.utils.text_dataset_from_directory lays it out: columns text
    and label (the sub-folder); a row's 'line' is its document's number."""

    def __init__(self, path):
        self.path = path
        self.classes = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not self.classes:
            raise UserError(f"{path}: a data folder needs one sub-folder per class, holding .txt files")
        if not any(any(folder.glob("*.txt")) for folder in self.classes):
            raise UserError(f"{path}: the class folders hold no .txt files")

    def header(self):
        return ["text", "label"]

    def _rows(self):
        number = 0
        for folder in self.classes:
            for doc in sorted(folder.glob("*.txt")):
                number += 1
                yield number, [doc.read_bytes().decode("utf-8", errors="replace"), folder.name], ""


class _Tfds:
    """A tensorflow-datasets set, read split by split; a missing validation split is carved from
    train by the row hash, in the recipe's train:validation proportion."""

    def __init__(self, name, columns, optional):
        import logging

        import tensorflow_datasets as tfds

        # tfds' own warnings, retries and progress bars would bury our one-line error.
        tfds.disable_progress_bar()
        for logger in ("absl", "urllib3", "tensorflow_datasets"):
            logging.getLogger(logger).setLevel(logging.ERROR)
        try:
            self.splits, info = tfds.load(name, split=None, with_info=True)
        except Exception as e:  # tfds raises many types: unknown name, no download, bad config
            raise UserError(f"tfds:{name}: cannot load ({str(e).splitlines()[0]})") from None
        if "test" not in self.splits:
            raise UserError(f"tfds:{name}: has no test split")
        self.features = info.features
        self.fields = {}
        for canonical, column in columns.items():
            fallbacks = {"text": TFDS_TEXT_FIELDS, "label": TFDS_LABEL_FIELDS, "target": TFDS_LABEL_FIELDS}.get(
                canonical, ()
            )
            found = column if column in self.features else next((f for f in fallbacks if f in self.features), None)
            if found is None and column and canonical not in optional:
                raise UserError(f"tfds:{name}: no field {column!r}; fields are: {', '.join(self.features)}")
            if found is not None and column:
                self.fields[canonical] = found

    def records(self, split, seed, fractions):
        import tensorflow_datasets as tfds

        carve = "validation" not in self.splits
        cuts = cuts_of((fractions[0], fractions[1], 0.0))
        wanted = [split] if split is not None else [0, 1, 2]
        names = ["train" if carve and s == 1 else SPLITS[s] for s in dict.fromkeys(wanted)]
        line = 0
        for name in dict.fromkeys(names):
            for row in tfds.as_numpy(self.splits[name]):
                line += 1
                values = [_tfds_value(self.features[f], row[f]) for f in self.fields.values()]
                own = SPLITS.index(name)
                if carve and name == "train":
                    own = split_of(values[0] if values else "", seed, cuts)
                yield line, own, values, ""


def _tfds_value(feature, value):
    """A tfds value as text: a class label's name, bytes decoded as UTF-8."""
    import tensorflow_datasets as tfds

    if isinstance(feature, tfds.features.ClassLabel):
        return feature.int2str(int(value))
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)
