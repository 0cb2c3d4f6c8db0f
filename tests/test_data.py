"""Data sources (shipped, user files, folders, tfds) and the text pipeline, on real inputs."""

import collections
import csv
import gzip
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from conftest import shipped_rows

from nlpapps.data import sources, text
from nlpapps.errors import UserError

SENTIMENT_COLUMNS = {"text": "text", "target": "score", "domain": "domain"}


def load_shipped(seed):
    return sources.load(
        "shipped:sentiment_snippets", SENTIMENT_COLUMNS, optional=("domain",), fractions=(0.8, 0.1, 0.1), seed=seed
    )


def rows_of(splits, *columns):
    """Multiset of row tuples over every split."""
    return collections.Counter(row for part in splits.values() for row in zip(*(part[c] for c in columns)))


@pytest.fixture(scope="module")
def shipped():
    return load_shipped(13)


# ---------------------------------------------------------------------------------------- shipped


def test_shipped_split_sizes_are_80_10_10(shipped):
    n = len(shipped_rows())
    assert n == 18513  # PROVENANCE.md
    sizes = {k: len(v["text"]) for k, v in shipped.items()}
    assert list(sizes) == ["train", "validation", "test"]
    assert sizes == {"train": 14810, "validation": 1852, "test": 1851}
    for part in shipped.values():  # every column of a split has the split's length
        assert {len(v) for v in part.values()} == {len(part["text"])}


def test_shipped_splits_partition_the_file(shipped):
    expected = collections.Counter((r["domain"], r["score"], r["text"]) for r in shipped_rows())
    assert rows_of(shipped, "domain", "target", "text") == expected
    assert set(shipped["test"]["domain"]) == {"movie", "product", "tweet"}


def test_shipped_split_is_deterministic_per_seed(shipped):
    again = load_shipped(13)
    for name in shipped:
        for column in shipped[name]:
            np.testing.assert_array_equal(again[name][column], shipped[name][column])
    other = load_shipped(14)
    assert [len(v["text"]) for v in other.values()] == [len(v["text"]) for v in shipped.values()]
    assert set(other["test"]["text"]) != set(shipped["test"]["text"])
    assert not np.array_equal(other["train"]["text"], shipped["train"]["text"])


def test_unknown_shipped_name_lists_the_shipped_sets():
    with pytest.raises(UserError, match="no shipped dataset 'nope'.*sentiment_snippets"):
        sources.load("shipped:nope", SENTIMENT_COLUMNS)


# ------------------------------------------------------------------------------------- user files

ROWS = [
    {"id": "1", "review": "Great film, loved it!", "stars": "5", "site": "a"},
    {"id": "2", "review": 'He said "meh", then left.', "stars": "2", "site": "b"},
    {"id": "3", "review": "Ça m'a plu : très réussi", "stars": "4", "site": "a"},
    {"id": "4", "review": "Two\tcolumns? no, one text", "stars": "3", "site": "c"},
    {"id": "5", "review": "Line one\nline two", "stars": "1", "site": "b"},
    {"id": "6", "review": "Not bad 😀", "stars": "4", "site": "a"},
    {"id": "7", "review": "Boring, boring, boring.", "stars": "1", "site": "c"},
    {"id": "8", "review": "Worth every penny", "stars": "5", "site": "a"},
    {"id": "9", "review": "Meh.", "stars": "3", "site": "b"},
    {"id": "10", "review": "Awful; just awful", "stars": "1", "site": "c"},
]
USER_COLUMNS = {"text": "review", "target": "stars", "domain": "site"}
EXPECTED = collections.Counter((r["review"], r["stars"], r["site"]) for r in ROWS)


def write_csv(path, rows, delimiter=","):
    """CSV with quoting; TSV as TSV is: no quoting, so rows with a tab or a newline are left out."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", newline="", encoding="utf-8") as f:
        if delimiter == "\t":
            f.write("\t".join(rows[0]) + "\n")
            kept = [r for r in rows if not any(c in "".join(r.values()) for c in "\t\n")]
            f.writelines("\t".join(r.values()) + "\n" for r in kept)
            return path
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


def load_user(path, columns=USER_COLUMNS, **kwargs):
    return sources.load(str(path), columns, optional=("domain",), fractions=(0.6, 0.2, 0.2), seed=3, **kwargs)


@pytest.mark.parametrize("name, delimiter", [("reviews.csv", ","), ("reviews.tsv", "\t"), ("reviews.csv.gz", ",")])
def test_delimited_user_file_with_chosen_columns(tmp_path, name, delimiter):
    splits = load_user(write_csv(tmp_path / name, ROWS, delimiter))
    expected = (
        EXPECTED
        if delimiter == ","
        else collections.Counter(
            (r["review"], r["stars"], r["site"]) for r in ROWS if "\t" not in r["review"] and "\n" not in r["review"]
        )
    )
    assert sum(len(v["text"]) for v in splits.values()) == sum(expected.values())
    assert rows_of(splits, "text", "target", "domain") == expected
    assert set(splits["train"]) == {"text", "target", "domain"}  # only the chosen columns


def test_jsonl_user_file_with_chosen_columns(tmp_path):
    path = tmp_path / "reviews.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for r in ROWS:  # numbers as JSON numbers, keys in a different order
            f.write(json.dumps({"stars": int(r["stars"]), "site": r["site"], "review": r["review"]}) + "\n")
        f.write("\n")  # a blank line is not a row
    splits = load_user(path)
    assert sum(len(v["text"]) for v in splits.values()) == len(ROWS)
    assert rows_of(splits, "text", "target", "domain") == EXPECTED


def test_optional_column_is_left_out_when_absent(tmp_path):
    rows = [{k: v for k, v in r.items() if k != "site"} for r in ROWS]
    splits = load_user(write_csv(tmp_path / "reviews.csv", rows))
    assert set(splits["train"]) == {"text", "target"}
    assert rows_of(splits, "text", "target") == collections.Counter((r["review"], r["stars"]) for r in ROWS)


def test_utf8_bom_is_not_part_of_the_first_column_name(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffreview,stars\nfine,3\ngood,4\nbad,1\nok,2\nmeh,2\n".encode("utf-8"))
    splits = load_user(path)
    assert sorted(t for v in splits.values() for t in v["text"]) == ["bad", "fine", "good", "meh", "ok"]


def test_missing_file_is_a_user_error(tmp_path):
    path = tmp_path / "absent.csv"
    with pytest.raises(UserError, match="data file not found") as e:
        load_user(path)
    assert str(path) in str(e.value)


def test_missing_column_names_it_and_the_columns_there_are(tmp_path):
    path = write_csv(tmp_path / "reviews.csv", ROWS)
    with pytest.raises(UserError, match="no column 'nope'") as e:
        load_user(path, {"text": "nope", "target": "stars"})
    assert "review" in str(e.value) and "stars" in str(e.value)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("content", [b"", b"review,stars\n", b"\n\n"], ids=["empty", "header-only", "blank"])
def test_file_without_rows_is_a_user_error(tmp_path, content):
    path = tmp_path / "reviews.csv"
    path.write_bytes(content)
    with pytest.raises(UserError, match="no rows") as e:
        load_user(path)
    assert "reviews.csv" in str(e.value)


def test_empty_jsonl_is_a_user_error(tmp_path):
    path = tmp_path / "reviews.jsonl"
    path.write_bytes(b"")
    with pytest.raises(UserError, match="no rows"):
        load_user(path)


def test_non_utf8_file_is_a_user_error(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("review,stars\nCafé très réussi,5\nNul,1\n".encode("latin-1"))
    with pytest.raises(UserError, match="not UTF-8") as e:
        load_user(path)
    assert "latin1.csv" in str(e.value)


def test_broken_jsonl_is_a_user_error(tmp_path):
    path = tmp_path / "reviews.jsonl"
    path.write_text('{"review": "fine", "stars": 3}\n{"review": "oops"\n', encoding="utf-8")
    with pytest.raises(UserError, match="not JSON lines"):
        load_user(path)


def test_unsupported_file_type_is_a_user_error(tmp_path):
    path = tmp_path / "reviews.xlsx"
    path.write_bytes(b"PK\x03\x04")
    with pytest.raises(UserError, match="unsupported file type"):
        load_user(path)


# ------------------------------------------------------------------------------- folder per class


def test_folder_per_class(tmp_path):
    docs = {"pos": ["A joy.", "Loved every minute!", "Brilliant."], "neg": ["Dull.", "Too long, too slow."]}
    for label, texts in docs.items():
        (tmp_path / label).mkdir()
        for i, t in enumerate(texts):
            (tmp_path / label / f"{i}.txt").write_text(t, encoding="utf-8")
    (tmp_path / "neg" / "bad.txt").write_bytes(b"caf\xe9 awful")  # not UTF-8: decoded with replacement
    (tmp_path / "neg" / "notes.md").write_text("not a document")  # not a .txt: ignored
    (tmp_path / ".cache").mkdir()  # hidden: not a class
    (tmp_path / ".cache" / "x.txt").write_text("ignored")
    # The sentiment recipe's column names (text/score/domain): a folder gives text and label anyway.
    splits = sources.load(str(tmp_path), SENTIMENT_COLUMNS, optional=("domain",), fractions=(0.6, 0.2, 0.2), seed=0)
    got = rows_of(splits, "text", "target")
    expected = collections.Counter((t, label) for label, texts in docs.items() for t in texts)
    expected[("caf\ufffd awful", "neg")] += 1
    assert got == expected


def test_folder_without_class_folders_is_a_user_error(tmp_path):
    (tmp_path / "a.txt").write_text("text at the top")
    with pytest.raises(UserError, match="one sub-folder per class"):
        sources.load(str(tmp_path), SENTIMENT_COLUMNS, optional=("domain",))


def test_class_folders_without_documents_are_a_user_error(tmp_path):
    (tmp_path / "pos").mkdir()
    (tmp_path / "neg").mkdir()
    with pytest.raises(UserError, match="no .txt files"):
        sources.load(str(tmp_path), SENTIMENT_COLUMNS, optional=("domain",))


# ------------------------------------------------------------------------------------------- tfds


@pytest.fixture(scope="module")
def imdb_metadata(tmp_path_factory):
    """Metadata for the mock (the tfds wheel ships none): imdb_reviews' real split names."""
    import tensorflow_datasets as tfds

    data_dir = tmp_path_factory.mktemp("tfds")
    builder = tfds.builder("imdb_reviews", data_dir=str(data_dir))
    builder.info.set_splits(
        tfds.core.SplitDict(
            [
                tfds.core.SplitInfo(name=name, shard_lengths=[40], num_bytes=0)
                for name in ("train", "test", "unsupervised")
            ]
        )
    )
    os.makedirs(builder.data_dir)
    builder.info.write_to_directory(builder.data_dir)
    return str(data_dir)


@pytest.mark.parametrize("label_column", ["label", "score"], ids=["label-column", "sentiment-default"])
def test_tfds_imdb_reviews(imdb_metadata, label_column):
    import tensorflow_datasets as tfds

    columns = {"text": "text", "target": label_column, "domain": "domain"}
    with tfds.testing.mock_data(num_examples=40, data_dir=imdb_metadata):
        splits = sources.load("tfds:imdb_reviews", columns, optional=("domain",))
    assert list(splits) == ["train", "validation", "test"]
    # imdb_reviews has no validation split: 10% of train is carved off for it
    assert len(splits["train"]["text"]) + len(splits["validation"]["text"]) == 40
    assert len(splits["validation"]["text"]) == 4
    assert len(splits["test"]["text"]) == 40
    for part in splits.values():
        assert set(part) == {"text", "target"}  # no 'domain' field in imdb_reviews
        assert set(part["target"]) <= {"neg", "pos"}  # ClassLabel ints mapped to their names
        assert all(isinstance(t, str) for t in part["text"])
    assert set(splits["test"]["target"]) == {"neg", "pos"}


def test_tfds_missing_field_is_a_user_error(imdb_metadata):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=5, data_dir=imdb_metadata):
        with pytest.raises(UserError, match="no field 'stars'") as e:
            sources.load("tfds:imdb_reviews", {"text": "text", "target": "stars", "domain": "stars"})
    assert "fields are" in str(e.value) and "text" in str(e.value)


def test_tfds_unknown_name_is_a_user_error():
    with pytest.raises(UserError, match="tfds:no_such_dataset_xyz: cannot load"):
        sources.load("tfds:no_such_dataset_xyz", {"text": "text", "target": "label"})


# -------------------------------------------------------------------------------- text pipeline


@pytest.fixture(scope="module")
def corpus():
    """Token ids of 3000 real snippets, and each example's index as its target."""
    texts = np.array([r["text"] for r in shipped_rows(3000)], dtype=object)
    vectorizer = text.fit_vectorizer(texts, 2000)
    ids = text.token_ids(vectorizer, texts, 100)
    keep = ids.row_lengths().numpy() > 0
    ids = tf.ragged.boolean_mask(ids, keep)
    return ids, np.arange(int(ids.nrows()), dtype="int32")


def padding_and_tokens(ds):
    """(pad zeros, real tokens, rows) over one pass: id 0 is only ever padding."""
    pads = tokens = rows = 0
    for x, _ in ds:
        x = x.numpy()
        pads, tokens, rows = pads + int((x == 0).sum()), tokens + int((x != 0).sum()), rows + len(x)
    return pads, tokens, rows


def test_bucketed_batches_carry_less_padding(corpus):
    ids, targets = corpus
    total_tokens, n = int(ids.row_lengths().numpy().sum()), len(targets)
    bucketed = padding_and_tokens(text.pipeline(ids, targets, batch_size=64, shuffle=True, seed=1))
    fixed = padding_and_tokens(
        text.pipeline(ids, targets, batch_size=64, shuffle=True, seed=1, bucketed=False, pad_to=100)
    )
    per_batch = padding_and_tokens(
        text.pipeline(ids, targets, batch_size=64, shuffle=True, seed=1, bucketed=False, pad_to=None)
    )
    for _pads, tokens, rows in (bucketed, fixed, per_batch):
        assert (tokens, rows) == (total_tokens, n)  # no token lost or cut by batching
    assert bucketed[0] < fixed[0] / 4
    assert bucketed[0] < per_batch[0] / 2  # better than padding each random batch to its longest
    assert bucketed[0] < total_tokens / 2


def test_every_example_exactly_once_per_epoch(corpus):
    ids, targets = corpus
    ds = text.pipeline(ids, targets, batch_size=64, shuffle=True, seed=7)
    rows = ids.to_list()
    orders = []
    for _ in range(2):
        seen = []
        for x, y in ds:
            x, y = x.numpy(), y.numpy()
            assert x.dtype == np.int32 and len(x) <= 64
            for row, index in zip(x, y):
                assert row[row != 0].tolist() == rows[index]  # the example's own tokens, in order
            seen.extend(y.tolist())
        assert sorted(seen) == targets.tolist()
        orders.append(seen)
    assert orders[0] != orders[1]  # reshuffled each epoch


def test_bucket_boundaries_cover_the_longest_text():
    edges = text.bucket_boundaries(100)
    assert edges == sorted(set(edges)) and edges[0] >= 1
    assert edges[-1] == 101


def test_standardize_keeps_punctuation_tokens_and_lowercases_non_ascii():
    out = text.standardize(tf.constant(["Really?! ÉTÉ ÜBER Ærø, DON'T :)"])).numpy()[0].decode()
    assert out.split() == ["really", "?", "!", "été", "über", "ærø", ",", "don't", ":", ")"]


def test_vectorizer_vocabulary_has_punctuation_and_lowercased_words():
    vectorizer = text.fit_vectorizer(np.array(["Great!!", "Why?", "ÉTÉ était Génial!", "why not?"], dtype=object), 100)
    vocab = vectorizer.get_vocabulary()
    assert {"!", "?", "été", "était", "génial", "why"} <= set(vocab)
    assert not {"ÉTÉ", "Génial", "Why", "Great!!"} & set(vocab)
    ids = vectorizer(tf.constant(["WHY?", "été!"])).numpy()
    assert [vocab[i] for i in ids[0] if i] == ["why", "?"]
    assert [vocab[i] for i in ids[1] if i] == ["été", "!"]


def test_serving_ids_accept_empty_and_invalid_utf8_and_cut_long_texts():
    vectorizer = text.fit_vectorizer(np.array(["good film", "bad film"], dtype=object), 100)
    serving_ids = text.ServingIds(3)
    ids = serving_ids(vectorizer(tf.constant(["", b"\xff\xfe bad"]))).numpy()
    assert ids.shape[0] == 2 and ids.shape[1] >= 1
    vocab = vectorizer.get_vocabulary()
    assert "bad" in [vocab[i] for i in ids[1]]
    only_empty = serving_ids(vectorizer(tf.constant([""]))).numpy()
    assert only_empty.shape == (1, 1) and only_empty[0, 0] == 0
    long = serving_ids(vectorizer(tf.constant(["good film bad film good"]))).numpy()
    assert [vocab[i] for i in long[0]] == ["good", "film", "bad"]


def test_numeric_text_column_is_a_user_error():
    with pytest.raises(UserError, match="holds numbers"):
        text.require_text(np.array(["1", "2.5", "-3", "4"] * 10, dtype=object), "score")
    text.require_text(np.array(["1", "a fine film"], dtype=object), "text")  # mostly text: fine


# ------------------------------------------------------------------ rows that do not fit their columns


def _snippets_file(path, rows, delimiter="\t"):
    """Real shipped snippets written as a user's file, columns domain, score, text."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        if delimiter == "\t":
            f.writelines(
                f"{r['domain']}\t{r['score']}\t{r['text']}\n"
                for r in [dict(domain="domain", score="score", text="text"), *rows]
            )
        else:
            writer = csv.writer(f)
            writer.writerow(["domain", "score", "text"])
            writer.writerows([r["domain"], r["score"], r["text"]] for r in rows)
    return path


def _load(path, **kwargs):
    return sources.load(str(path), SENTIMENT_COLUMNS, optional=("domain",), **kwargs)


def test_one_empty_score_is_skipped_and_reported_not_turned_into_labels(tmp_path):
    rows = shipped_rows(1000)
    rows[4] = {**rows[4], "score": ""}
    logged, notes = [], {}
    splits = _load(_snippets_file(tmp_path / "one_empty.tsv", rows), log=logged.append, notes=notes)
    assert sum(len(v["text"]) for v in splits.values()) == 999
    assert all(float(t) == float(t) for v in splits.values() for t in v["target"])  # every score numeric
    assert logged == ["%s: skipped 1 row that does not fit (line 6: score empty)" % (tmp_path / "one_empty.tsv")]
    assert notes == {"skipped_bad_rows": 1, "bad_lines": [6]}


def test_tsv_has_no_quoting_a_leading_quote_swallows_nothing(tmp_path):
    rows = shipped_rows(1000)
    rows[9] = {**rows[9], "text": '"' + rows[9]["text"]}  # an unclosed quote opening a text
    splits = _load(_snippets_file(tmp_path / "quote.tsv", rows))
    texts = [t for v in splits.values() for t in v["text"]]
    assert len(texts) == 1000 and rows[9]["text"] in texts


def test_csv_keeps_its_quoting(tmp_path):
    rows = [{"domain": "d", "score": "1.5", "text": 'He said "fine, then"\nand left'}] + shipped_rows(99)
    splits = _load(_snippets_file(tmp_path / "quoted.csv", rows, delimiter=","))
    texts = [t for v in splits.values() for t in v["text"]]
    assert len(texts) == 100 and rows[0]["text"] in texts


def test_a_wrong_field_count_is_a_bad_row_with_its_line(tmp_path):
    path = tmp_path / "fields.tsv"
    rows = shipped_rows(300)
    lines = ["domain\tscore\ttext"] + [f"{r['domain']}\t{r['score']}\t{r['text']}" for r in rows]
    lines[7] += "\textra"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    logged = []
    splits = _load(path, log=logged.append)
    assert sum(len(v["text"]) for v in splits.values()) == 299
    assert "line 8: 4 fields where the header has 3" in logged[0]


def test_many_bad_rows_refuse_with_one_line_naming_the_first_lines(tmp_path):
    rows = shipped_rows(1000)
    for i in range(0, 1000, 10):
        rows[i] = {**rows[i], "score": "n/a"}
    path = _snippets_file(tmp_path / "many.tsv", rows)
    with pytest.raises(UserError) as e:
        _load(path)
    message = str(e.value)
    assert "\n" not in message and "100 of 1000 rows do not fit" in message
    assert "line 2: score 'n/a' is not a number; line 12:" in message and "data.max_bad_rows = 0.01" in message
    # The threshold is the recipe's: raised, the same file loads without those rows.
    splits = _load(path, max_bad_rows=0.2)
    assert sum(len(v["text"]) for v in splits.values()) == 900


def test_a_mostly_text_column_is_labels_and_only_empty_values_misfit(tmp_path):
    rows = [
        {"domain": "d", "score": "pos" if float(r["score"]) > 0 else "neg", "text": r["text"]}
        for r in shipped_rows(400)
    ]
    rows[3]["score"] = ""
    logged = []
    splits = _load(_snippets_file(tmp_path / "labels.tsv", rows), log=logged.append)
    assert {t for v in splits.values() for t in v["target"]} == {"neg", "pos"}
    assert "line 5: score empty" in logged[0]
