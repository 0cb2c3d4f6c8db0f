"""Streamed sources: rows are split by a stable hash of their text, read in one bounded pass, and a
malformed row in the middle of a file is skipped and counted, never fatal."""

import csv
import json
import random
import subprocess
import sys

import numpy as np
import pytest
from conftest import run_nlpapps, shipped_rows
from sklearn import metrics as skm

from nlpapps import evaluation
from nlpapps.data import stream
from nlpapps.errors import UserError

COLUMNS = {"text": "text", "target": "score", "domain": "domain"}


def split_by_text(source):
    """{text: split} of every readable row."""
    return {values[source.names.index("text")]: split for _, split, values, _ in source.records() if values}


def write_tsv(path, rows, header=("domain", "score", "text")):
    with open(path, "wb") as f:
        f.write("\t".join(header).encode() + b"\n")
        for row in rows:
            f.write(row if isinstance(row, bytes) else "\t".join(row).encode() + b"\n")
    return path


@pytest.fixture(scope="module")
def rows():
    return [(r["domain"], r["score"], r["text"]) for r in shipped_rows()[:3000]]


def test_hash_split_is_about_80_10_10_and_keeps_duplicates_together():
    source = stream.Source("shipped:sentiment_snippets", COLUMNS, optional=("domain",), seed=13)
    profile = source.profile(100, max_bad_rows=0.0)
    assert np.allclose(np.array(profile.sizes) / sum(profile.sizes), [0.8, 0.1, 0.1], atol=0.015)
    splits = {}
    for _, split, values, _ in source.records():
        splits.setdefault(values[source.names.index("text")], set()).add(split)
    assert all(len(s) == 1 for s in splits.values())  # the same text, in one split only


def test_same_row_same_split_whatever_the_order_and_the_process(rows, tmp_path):
    forward = write_tsv(tmp_path / "forward.tsv", rows)
    shuffled = list(rows)
    random.Random(1).shuffle(shuffled)
    backward = write_tsv(tmp_path / "shuffled.tsv", shuffled)
    first = split_by_text(stream.Source(str(forward), COLUMNS, seed=5))
    assert first == split_by_text(stream.Source(str(backward), COLUMNS, seed=5))
    # another interpreter (another PYTHONHASHSEED) puts every row in the same split
    script = (
        "import json, sys; from nlpapps.data import stream; "
        f"s = stream.Source(sys.argv[1], {COLUMNS!r}, seed=5); "
        "print(json.dumps([[v[s.names.index('text')], k] for _, k, v, _ in s.records()]))"
    )
    out = subprocess.run([sys.executable, "-c", script, str(backward)], capture_output=True, check=True, text=True)
    assert dict(json.loads(out.stdout)) == first
    other_seed = split_by_text(stream.Source(str(forward), COLUMNS, seed=6))
    assert sum(first[t] != other_seed[t] for t in first) > 0.2 * len(first)  # the seed matters


def test_csv_and_jsonl_stream_the_same_rows_as_the_tsv_in_bounded_batches(rows, tmp_path):
    tsv = write_tsv(tmp_path / "rows.tsv", rows)
    with open(tmp_path / "rows.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("domain", "score", "text"), *rows])
    with open(tmp_path / "rows.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"text": t, "score": float(s), "domain": d}) + "\n" for d, s, t in rows)
    read = {}
    for name in ("rows.tsv", "rows.csv", "rows.jsonl"):
        source = stream.Source(str(tmp_path / name), COLUMNS, seed=2)
        profile = source.profile(500, max_bad_rows=0.0)
        assert len(profile.sample) == 500  # the vocabulary sample is bounded, not every training text
        batches = [b for split in range(3) for b in source.batches(split)]
        assert max(len(b[0]) for b in batches) == stream.BATCH
        read[name] = sorted(
            (t, d, float(s))
            for b in batches
            for d, s, t in zip(*(b[source.names.index(c)] for c in ("domain", "target", "text")))
        )
        assert profile.sizes == [sum(1 for b in source.batches(k) for _ in b[0]) for k in range(3)]
    assert read["rows.tsv"] == read["rows.csv"] == read["rows.jsonl"]
    assert len(read["rows.tsv"]) == sum(1 for r in rows if r[2].strip())
    assert split_by_text(stream.Source(str(tsv), COLUMNS, seed=2)) == split_by_text(
        stream.Source(str(tmp_path / "rows.jsonl"), COLUMNS, seed=2)
    )


def test_bad_rows_in_the_middle_are_counted_in_every_format(rows, tmp_path):
    good = rows[:400]
    tsv = write_tsv(
        tmp_path / "bad.tsv",
        [*good[:200], b"movie\t1.5\n", b"movie\t2.0\tfine \xff\xfe film\n", ("movie", "", "no score"), *good[200:]],
    )
    source = stream.Source(str(tsv), COLUMNS)
    notes = []
    profile = source.profile(1000, max_bad_rows=0.01, log=notes.append)
    assert profile.bad_rows == 3 and sum(profile.sizes) == 400
    assert "line 202: 2 fields where the header has 3; line 203: not UTF-8 text; line 204: score empty" in notes[0]
    jsonl = tmp_path / "bad.jsonl"
    lines = [json.dumps({"text": t, "score": s}).encode() for _, s, t in good]
    jsonl.write_bytes(
        b"\n".join([*lines[:100], b"{not json", b'{"text": "caf\xe9", "score": 1}', b"[1, 2]", *lines[100:]])
    )
    profile = stream.Source(str(jsonl), COLUMNS, optional=("domain",)).profile(1000, max_bad_rows=0.01)
    assert profile.bad_rows == 3 and sum(profile.sizes) == 400
    with pytest.raises(UserError, match=r"3 of 403 rows do not fit .* data.max_bad_rows = 0.005"):
        stream.Source(str(tsv), COLUMNS).profile(1000, max_bad_rows=0.005)


def test_a_file_with_bad_rows_in_the_middle_trains_and_reports_them(rows, tmp_path):
    good = rows[:600]
    data = write_tsv(
        tmp_path / "reviews.tsv",
        [
            *good[:300],
            b"movie\t1.5\n",
            b"movie\t2.0\tan \xff\xfe invalid review\n",
            ("tweet", "1.0", "  "),
            *good[300:],
        ],
    )
    args = ["run", "sentiment", "--data", str(data), "--epochs", "1", "--units", "4", "--set", "text.vocab_size=300"]
    proc = run_nlpapps([*args, "--set", "model.embedding_dim=4", "--output", str(tmp_path / "out")])
    out = proc.stdout.decode()
    assert proc.returncode == 0, proc.stderr.decode()
    assert "skipped 2 rows that do not fit (line 302: 2 fields where the header has 3; line 303: not UTF-8 text)" in out
    assert "skipped 1 empty texts" in out
    meta = json.loads(next((tmp_path / "out").glob("*/1/metadata.json")).read_text())
    assert meta["data"]["skipped_bad_rows"] == 2 and sum(meta["data"]["sizes"].values()) == 600


def test_metrics_accumulated_batch_by_batch_equal_the_whole_array_ones(rows):
    rng = np.random.default_rng(0)
    truth = np.array([float(s) for _, s, _ in rows])
    predicted = truth + rng.normal(0, 1, len(truth))
    moments = evaluation.Moments()
    for i in range(0, len(truth), 256):
        moments.add(truth[i : i + 256], predicted[i : i + 256])
    whole = evaluation.regression(truth, predicted)
    assert moments.result()["mae"] == pytest.approx(whole["mae"]) and moments.result()["pearson"] == pytest.approx(
        whole["pearson"]
    )
    labels = ["movie", "product", "tweet"]
    true_domain = np.array([d for d, _, _ in rows], dtype=object)
    guessed = np.where(rng.random(len(rows)) < 0.7, true_domain, "tweet")
    matrix = skm.confusion_matrix(true_domain, guessed, labels=labels)
    ours, theirs = evaluation.confusion_scores(matrix, labels), evaluation.classification(true_domain, guessed, labels)
    assert ours["accuracy"] == pytest.approx(theirs["accuracy"]) and ours["macro_f1"] == pytest.approx(
        theirs["macro_f1"]
    )


def test_pairs_with_a_blank_side_or_over_a_word_limit_are_counted_apart_and_left_out(tmp_path):
    """Two free-text columns (a translation pair): a blank on either side and a side over its word
    limit are counted apart from the bad rows; the vocabulary samples keep the pairs row for row."""
    good = [(f"source words number {i}", f"target {i}") for i in range(200)]
    rows = [*good, ("", "a target without a source"), ("a source without a target", "  ")]
    rows += [("one two three four five six", "short"), ("short", "one two three four")]
    path = write_tsv(tmp_path / "pairs.tsv", [*rows[:100], b"only one field\n", *rows[100:]], header=("en", "fr"))
    source = stream.Source(
        str(path),
        {"source": "en", "target": "fr"},
        texts=("source", "target"),
        max_words={"source": 5, "target": 3},
    )
    profile = source.profile(1000, max_bad_rows=0.01)
    assert (sum(profile.empty), sum(profile.too_long), profile.bad_rows) == (2, 2, 1)
    assert sum(profile.sizes) == 200
    assert set(zip(profile.samples["source"], profile.samples["target"])) <= set(good)
    assert len(profile.samples["source"]) == profile.sizes[0] and profile.sample is profile.samples["source"]
    read = sorted(pair for split in range(3) for batch in source.batches(split) for pair in zip(*batch))
    assert read == sorted(good)
