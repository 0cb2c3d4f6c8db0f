"""Data sources (shipped, user files, folders, tfds) and the text pipeline, on real inputs."""

import collections
import csv
import gzip
import json
import os
import re

import numpy as np
import pytest
import tensorflow as tf
from conftest import shipped_rows

from nlpapps.data import series, stream, text
from nlpapps.errors import UserError

SENTIMENT_COLUMNS = {"text": "text", "target": "score", "domain": "domain"}


def rows_of(source, *columns, max_bad_rows=0.0, log=None):
    """Multiset of the (columns) of the rows a source gives over every split, after its one
    profiling pass (which decides the column kinds, and refuses or reports rows that do not fit)."""
    source.profile(100, max_bad_rows, log)
    at = [source.names.index(c) for c in columns]
    return collections.Counter(
        row for split in range(3) for batch in source.batches(split) for row in zip(*(batch[i] for i in at))
    )


# ---------------------------------------------------------------------------------------- shipped


def test_every_shipped_row_is_read_once_and_intact():
    rows = shipped_rows()
    assert len(rows) == 18513  # PROVENANCE.md
    source = stream.Source("shipped:sentiment_snippets", SENTIMENT_COLUMNS, optional=("domain",), seed=13)
    assert rows_of(source, "domain", "target", "text") == collections.Counter(
        (r["domain"], r["score"], r["text"]) for r in rows
    )


def test_unknown_shipped_name_lists_the_shipped_sets_of_its_kind():
    text_sets = "bible_en_fr, first_names, sentiment_snippets, sms_spam, trec_questions"
    with pytest.raises(UserError, match=f"^no shipped dataset 'nope'; shipped: {text_sets}$"):
        stream.Source("shipped:nope", SENTIMENT_COLUMNS)
    # the time series read .csv.gz as well as .tsv.gz, from the same folder
    with pytest.raises(UserError, match=f"^no shipped dataset 'nope'; shipped: {text_sets[:12]}.*nyc_weather_2013"):
        series.read_table("shipped:nope")
    assert "time_hour" in series.read_table("shipped:nyc_weather_2013", nrows=1)


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


def user_source(path, columns=USER_COLUMNS):
    return stream.Source(str(path), columns, optional=("domain",), fractions=(0.6, 0.2, 0.2), seed=3)


@pytest.mark.parametrize("name, delimiter", [("reviews.csv", ","), ("reviews.tsv", "\t"), ("reviews.csv.gz", ",")])
def test_delimited_user_file_with_chosen_columns(tmp_path, name, delimiter):
    """CSV quoting keeps commas, quotes and newlines inside a text; only the chosen columns are read."""
    source = user_source(write_csv(tmp_path / name, ROWS, delimiter))
    expected = (
        EXPECTED
        if delimiter == ","
        else collections.Counter(
            (r["review"], r["stars"], r["site"]) for r in ROWS if "\t" not in r["review"] and "\n" not in r["review"]
        )
    )
    assert rows_of(source, "text", "target", "domain") == expected
    assert source.names == ["text", "target", "domain"]  # no 'id'


def test_jsonl_user_file_with_chosen_columns(tmp_path):
    path = tmp_path / "reviews.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for r in ROWS:  # numbers as JSON numbers, keys in a different order
            f.write(json.dumps({"stars": int(r["stars"]), "site": r["site"], "review": r["review"]}) + "\n")
        f.write("\n")  # a blank line is not a row
    assert rows_of(user_source(path), "text", "target", "domain") == EXPECTED


def test_optional_column_is_left_out_when_absent(tmp_path):
    rows = [{k: v for k, v in r.items() if k != "site"} for r in ROWS]
    source = user_source(write_csv(tmp_path / "reviews.csv", rows))
    assert source.names == ["text", "target"]
    assert rows_of(source, "text", "target") == collections.Counter((r["review"], r["stars"]) for r in ROWS)


def test_utf8_bom_is_not_part_of_the_first_column_name(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffreview,stars\nfine,3\ngood,4\nbad,1\nok,2\nmeh,2\n".encode("utf-8"))
    assert sorted(rows_of(user_source(path), "text")) == [("bad",), ("fine",), ("good",), ("meh",), ("ok",)]


def test_missing_column_names_it_and_the_columns_there_are(tmp_path):
    path = write_csv(tmp_path / "reviews.csv", ROWS)
    expected = f"^{re.escape(str(path))}: no column 'nope'; columns are: id, review, stars, site$"
    with pytest.raises(UserError, match=expected):
        user_source(path, {"text": "nope", "target": "stars"})


@pytest.mark.parametrize(
    "name, content",
    [("reviews.csv", b"review,stars\n"), ("reviews.csv", b"\n\n"), ("reviews.jsonl", b"")],
    ids=["header-only", "blank", "empty-jsonl"],
)
def test_file_without_rows_is_a_user_error(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UserError, match=f"^{re.escape(str(path))}: no rows$"):
        user_source(path).profile(100, 0.0)


def test_a_file_that_is_not_utf8_is_refused_naming_its_rows(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("review,stars\nCafé très réussi,5\nNul,1\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"latin1.csv: 1 of 2 rows do not fit \(line 2: not UTF-8 text\)"):
        user_source(path).profile(100, 0.01)


def test_unsupported_file_type_is_a_user_error(tmp_path):
    path = tmp_path / "reviews.xlsx"
    path.write_bytes(b"PK\x03\x04")
    with pytest.raises(UserError, match="unsupported file type"):
        user_source(path)


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
    source = stream.Source(str(tmp_path), SENTIMENT_COLUMNS, optional=("domain",), fractions=(0.6, 0.2, 0.2))
    expected = collections.Counter((t, label) for label, texts in docs.items() for t in texts)
    expected[("caf\ufffd awful", "neg")] += 1
    assert rows_of(source, "text", "target") == expected


def test_class_folders_without_documents_are_a_user_error(tmp_path):
    (tmp_path / "pos").mkdir()
    (tmp_path / "neg").mkdir()
    with pytest.raises(UserError, match="no .txt files"):
        stream.Source(str(tmp_path), SENTIMENT_COLUMNS, optional=("domain",))


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
        source = stream.Source("tfds:imdb_reviews", columns, optional=("domain",))
        records = list(source.records())
    assert source.names == ["text", "target"]  # no 'domain' field in imdb_reviews
    sizes = collections.Counter(split for _, split, _, _ in records)
    # imdb_reviews has no validation split: about 1/9 of train is carved off for it, by the row hash
    assert sizes[0] + sizes[1] == 40 and 1 <= sizes[1] <= 12 and sizes[2] == 40
    assert all(isinstance(t, str) for _, _, (t, _), _ in records)
    assert {target for _, _, (_, target), _ in records} == {"neg", "pos"}  # ClassLabel ints as their names


def test_tfds_missing_field_is_a_user_error(imdb_metadata):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=5, data_dir=imdb_metadata):
        with pytest.raises(UserError, match="no field 'stars'") as e:
            stream.Source("tfds:imdb_reviews", {"text": "text", "target": "stars", "domain": "stars"})
    assert "fields are" in str(e.value) and "text" in str(e.value)


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


def test_standardize_digits_reads_numbers_by_their_shape():
    """Real spam: two phone numbers of one length become one token, cut from the letters around them."""
    out = text.standardize_digits(
        tf.constant(["Call 09061701461 now", "Call 08452810075over18's £1.50", "In 1990 ２３"])
    ).numpy()
    assert [o.decode().split() for o in out] == [
        ["call", "00000000000", "now"],
        ["call", "00000000000", "over", "00", "'s", "£", "0", ".", "00"],
        ["in", "0000", "00"],
    ]


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


def _profile(path, max_bad_rows=0.01, log=None):
    source = stream.Source(str(path), SENTIMENT_COLUMNS, optional=("domain",))
    return source, source.profile(100, max_bad_rows, log)


def test_one_empty_score_is_skipped_and_reported_not_turned_into_labels(tmp_path):
    rows = shipped_rows(1000)
    rows[4] = {**rows[4], "score": ""}
    logged = []
    source, profile = _profile(_snippets_file(tmp_path / "one_empty.tsv", rows), log=logged.append)
    assert sum(profile.sizes) == 999 and profile.bad_rows == 1 and profile.bad_lines == [6]
    assert logged == ["%s: skipped 1 row that does not fit (line 6: score empty)" % (tmp_path / "one_empty.tsv")]
    assert all(v.strip() for counts in profile.values["target"] for v in counts)  # no empty label
    assert all(float(t) == float(t) for (t,) in rows_of(source, "target", max_bad_rows=0.01))  # every score numeric


def test_tsv_has_no_quoting_a_leading_quote_swallows_nothing(tmp_path):
    rows = shipped_rows(1000)
    rows[9] = {**rows[9], "text": '"' + rows[9]["text"]}  # an unclosed quote opening a text
    texts = rows_of(stream.Source(str(_snippets_file(tmp_path / "quote.tsv", rows)), SENTIMENT_COLUMNS), "text")
    assert sum(texts.values()) == 1000 and (rows[9]["text"],) in texts


def test_many_bad_rows_refuse_with_one_line_naming_the_first_lines(tmp_path):
    rows = shipped_rows(1000)
    for i in range(0, 1000, 10):
        rows[i] = {**rows[i], "score": "n/a"}
    path = _snippets_file(tmp_path / "many.tsv", rows)
    with pytest.raises(UserError) as e:
        _profile(path)
    message = str(e.value)
    assert "\n" not in message and "100 of 1000 rows do not fit" in message
    assert "line 2: score 'n/a' is not a number; line 12:" in message and "data.max_bad_rows = 0.01" in message
    # The threshold is the recipe's: raised, the same file loads without those rows.
    _, profile = _profile(path, max_bad_rows=0.2)
    assert sum(profile.sizes) == 900 and profile.bad_rows == 100


def test_a_mostly_text_column_is_labels_and_only_empty_values_misfit(tmp_path):
    rows = [
        {"domain": "d", "score": "pos" if float(r["score"]) > 0 else "neg", "text": r["text"]}
        for r in shipped_rows(400)
    ]
    rows[3]["score"] = ""
    logged = []
    source, profile = _profile(_snippets_file(tmp_path / "labels.tsv", rows), log=logged.append)
    assert not source.numeric["target"] and profile.bad_rows == 1
    assert {v for counts in profile.values["target"] for v in counts} == {"neg", "pos"}
    assert "line 5: score empty" in logged[0]
