"""Translation end to end on the shipped Bible pairs: one tiny model trained per module; its export
served in a TensorFlow-only process on hostile inputs and compared with the CLI and the evaluation;
greedy vs a width-1 beam; a property test over the signatures; another column pair; bad inputs."""

import csv
import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import TF_ONLY, invoke, last_json_line, run_nlpapps
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nlpapps.data import stream

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

SHIPPED_PAIRS = Path(__file__).resolve().parent.parent / "nlpapps" / "data" / "shipped" / "bible_en_fr.tsv.gz"
# Tiny and quick: the shortest verses only (about 600 pairs), two epochs of a small model.
TINY = [
    "--epochs",
    "2",
    "--units",
    "16",
    "--set",
    "model.decoder_units=32",
    "--set",
    "model.embedding_dim=16",
    "--set",
    "model.attention_units=16",
    "--set",
    "data.max_source_words=6",
    "--set",
    "text.source_vocab=400",
    "--set",
    "text.target_vocab=400",
    "--set",
    "decode.beam_width=3",
]
HOSTILE = [
    "In the beginning God created the heavens and the earth.",
    "",
    " ".join(["light"] * 500),
    "Xqzzv blorptangle wibbleforth",
    "?!... ,;: ( )",
    "神说：要有光。 Свет!",
    "   ",
    "Love your neighbour as yourself.",
]
INVALID_UTF8 = b"The light \xff\xfe shines \xc3"

# A fresh interpreter that can import tensorflow but not nlpapps: every signature on the inputs.
SERVE = (
    TF_ONLY
    + r"""
import tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
texts = tf.constant([t.encode("latin-1") for t in json.loads(sys.argv[2])])
calls = {"serving_default": {}, "translate_greedy": {}, "attention": {},
         "translate_beam": {"beam_width": tf.constant(2)}}
def plain(v):
    v = v.numpy()
    return [x.decode("utf-8") if isinstance(x, bytes) else x for x in v.ravel().tolist()], list(v.shape)
print(json.dumps({name: {k: plain(v) for k, v in model.signatures[name](text=texts, **extra).items()}
                  for name, extra in calls.items()}))
"""
)


def serve_in_fresh_process(export, raw):
    """Outputs of every signature on `raw` (bytes), in a process that imports only tensorflow."""
    return last_json_line(SERVE, export, json.dumps([r.decode("latin-1") for r in raw]))


def train(args, output):
    result = invoke(["run", str(args[0]), *TINY, *map(str, args[1:]), "--output", output])  # later flags win
    assert result.exit_code == 0, f"training failed:\n{result.output}\n{result.exception!r}"
    name = Path(args[0]).stem if str(args[0]).endswith(".toml") else args[0]
    path = Path(output) / name / "1"
    assert (path / "saved_model.pb").is_file(), result.output
    return path, result.output, json.loads((path / "metadata.json").read_text())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """`nlpapps run translate` on the shipped pairs with tiny settings: (export, output, metadata, root)."""
    root = tmp_path_factory.mktemp("models")
    return (*train(["translate"], root), root)


@pytest.fixture(scope="module")
def loaded(tiny):
    import tensorflow as tf

    return tf.saved_model.load(str(tiny[0]))


def shipped_pairs():
    with gzip.open(SHIPPED_PAIRS, "rt", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))  # TSV has no quoting


# ------------------------------------------------------------------------------------- the run


def test_shipped_pairs_match_their_provenance():
    rows = shipped_pairs()
    assert len(rows) == 31102 and list(rows[0]) == ["ref", "en", "fr"]
    assert rows[0]["fr"] == "Au commencement, Dieu créa les cieux et la terre."


def test_run_prints_the_table_samples_and_where_the_model_went(tiny):
    path, output, meta, _ = tiny
    assert "unigram level of the loss" in output
    table = output[output.index("test split") :]
    for word in ("bleu", "chrf_uncased", "greedy", "beam 3", "copy the source", "cased", "sample translations"):
        assert word in table
    assert output.rstrip().endswith(f"exported translate model to {path}")
    rows = meta["metrics"]["test"]
    assert [r["system"] for r in rows] == ["greedy", "beam 3", "copy the source", "references"]
    assert meta["metrics"]["headline"]["bleu"] == rows[1]["bleu"]
    assert meta["metrics"]["case_sensitive"] is True
    assert all(r["unknown_markers"] == 0 for r in rows[:2]) and rows[0]["sentences"] == meta["data"]["sizes"]["test"]
    # cased scores: copying the source scores higher ignoring case (names are capitalised in both)
    assert rows[2]["bleu_uncased"] >= rows[2]["bleu"] and rows[2]["chrf_uncased"] > rows[2]["chrf"]
    assert len(meta["metrics"]["samples"]) == 5
    assert 0.0 <= meta["metrics"]["token_accuracy"] <= 1.0
    assert meta["signatures"] == ["attention", "serving_default", "translate_beam", "translate_greedy"]
    assert (path / "training_curves.png").is_file()


def test_test_split_is_the_seeded_hash_one_within_the_length_limit(tiny):
    """Each pair's split is the seeded hash of its source text; blank pairs and pairs over the
    length limits are left out of every split."""
    _, _, meta, _ = tiny
    cuts = stream.cuts_of((0.8, 0.1, 0.1))
    short = {k: [] for k in stream.SPLITS}
    for r in shipped_pairs():
        if 0 < len(r["en"].split()) <= 6 and 0 < len(r["fr"].split()) <= 30:
            short[stream.SPLITS[stream.split_of(r["en"], 13, cuts)]].append((r["en"], r["fr"]))
    assert meta["data"]["sizes"] == {k: len(v) for k, v in short.items()}
    assert meta["data"]["skipped"] == {"blank": 0, "too_long": 31102 - sum(map(len, short.values()))}
    samples = {(s["source"], s["reference"]) for s in meta["metrics"]["samples"]}
    assert samples <= set(short["test"])


def test_list_shows_the_model_with_its_bleu(tiny):
    _, _, meta, root = tiny
    result = invoke(["list", "--models", root])
    assert result.exit_code == 0
    line = next(x for x in result.output.splitlines() if "translate/1" in x)
    assert "translate" in line and f"bleu {meta['metrics']['headline']['bleu']:.3f}" in line


# ------------------------------------------------------------------- export, CLI and evaluation


def test_export_in_a_tensorflow_only_process_on_hostile_inputs_agrees_with_the_cli(tiny):
    path = tiny[0]
    raw = [t.encode("utf-8") for t in HOSTILE] + [INVALID_UTF8]
    served = serve_in_fresh_process(path, raw)
    n = len(raw)
    for name in ("serving_default", "translate_greedy", "translate_beam", "attention"):
        translations, shape = served[name]["translation"]
        scores, score_shape = served[name]["score"]
        assert shape == [n] and score_shape == [n]
        assert all(np.isfinite(scores))
        assert translations[1] == "" and translations[6] == ""  # an empty input gives an empty output
        assert all(not t.startswith(" ") and " ." not in t and " ," not in t for t in translations)
    # attention = serving_default's translation, with the weights of each output word over the source
    assert served["attention"]["translation"] == served["serving_default"]["translation"]
    weights, shape = served["attention"]["weights"]
    assert shape[0] == n and shape[2] <= 100  # a 500-word input is cut to text.max_tokens = 100
    assert np.all(np.isfinite(weights))
    # the CLI, arguments and stdin, gives the same strings
    cli = run_nlpapps(["translate", "--models", path.parent.parent, "--json", *HOSTILE])
    assert cli.returncode == 0, cli.stderr.decode()
    rows = [json.loads(line) for line in cli.stdout.decode().splitlines()]
    assert [r["translation"] for r in rows] == served["serving_default"]["translation"][0][: len(HOSTILE)]
    greedy = run_nlpapps(["translate", "--model", path, "--beam", "1", "-"], input=b"\n".join(raw) + b"\n")
    assert greedy.returncode == 0, greedy.stderr.decode()
    assert greedy.stdout.decode().splitlines() == served["translate_greedy"]["translation"][0]
    beam2 = run_nlpapps(["translate", "--model", path, "--beam", "2", "-"], input=b"\n".join(raw) + b"\n")
    assert beam2.stdout.decode().splitlines() == served["translate_beam"]["translation"][0]


def test_evaluation_samples_are_what_the_export_says(tiny, loaded):
    import tensorflow as tf

    meta = tiny[2]
    sources_ = [s["source"] for s in meta["metrics"]["samples"]]
    beam = loaded.signatures["serving_default"](text=tf.constant(sources_))["translation"].numpy()
    greedy = loaded.signatures["translate_greedy"](text=tf.constant(sources_))["translation"].numpy()
    assert [b.decode() for b in beam] == [s["beam 3"] for s in meta["metrics"]["samples"]]
    assert [g.decode() for g in greedy] == [s["greedy"] for s in meta["metrics"]["samples"]]


def test_no_output_repeats_a_3_gram_of_pieces(tiny, loaded):
    """decode.no_repeat_ngram = 3 (the default): the search never repeats a 3-gram of pieces."""
    import tensorflow as tf

    texts = tf.constant([r["en"] for r in shipped_pairs()[:64]] + HOSTILE)
    pieces = loaded.signatures["attention"](text=texts)["output_tokens"].numpy().tolist()
    assert tiny[2]["recipe"]["decode.no_repeat_ngram"] == 3
    for row in pieces:
        row = [p for p in row if p]
        grams = list(zip(row, row[1:], row[2:]))
        assert len(set(grams)) == len(grams), row


def test_beam_of_width_one_is_greedy(tiny, loaded):
    import tensorflow as tf

    texts = tf.constant([r["en"] for r in shipped_pairs()[:64]] + HOSTILE)
    greedy = loaded.signatures["translate_greedy"](text=texts)
    beam1 = loaded.signatures["translate_beam"](text=texts, beam_width=tf.constant(1))
    assert beam1["translation"].numpy().tolist() == greedy["translation"].numpy().tolist()
    np.testing.assert_allclose(beam1["score"].numpy(), greedy["score"].numpy(), rtol=1e-5)
    wider = loaded.signatures["translate_beam"](text=texts, beam_width=tf.constant(6))["score"].numpy()
    assert np.all(np.isfinite(wider))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.text(max_size=40), st.binary(max_size=40)), min_size=1, max_size=4))
def test_any_input_gives_one_translation_and_a_finite_score_each(loaded, texts):
    import tensorflow as tf

    raw = [t.encode("utf-8", "surrogatepass") if isinstance(t, str) else t for t in texts]
    for name in ("translate_greedy", "serving_default"):
        out = loaded.signatures[name](text=tf.constant(raw, dtype=tf.string))
        assert out["translation"].shape == (len(raw),)
        assert np.all(np.isfinite(out["score"].numpy()))


def test_show_attention_draws_a_heatmap(tiny, tmp_path):
    png = tmp_path / "attention.png"
    result = run_nlpapps(
        ["translate", "--model", tiny[0], "--show-attention", png, "The light shines in the darkness.", "Jesus wept."]
    )
    assert result.returncode == 0, result.stderr.decode()
    assert len(result.stdout.decode().splitlines()) == 2
    for p in (png, tmp_path / "attention-2.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert str(p) in result.stderr.decode()  # the user is told where each heat map went


def test_the_heatmap_has_a_title_and_a_colour_bar(loaded, tmp_path):
    """The heat map says what was translated into what, and what its colours mean."""
    import tensorflow as tf

    from nlpapps.tasks.translate import serving

    outputs = serving.chooser(loaded, None, True)(tf.constant(["Jesus wept."]))
    figure = serving.show_attention(outputs, 0, tmp_path / "a.png")
    heatmap, colour_bar = figure.axes
    assert heatmap.get_title().startswith("Jesus wept") and " → " in heatmap.get_title()
    assert colour_bar.get_ylabel() == "attention weight"


def test_keras_twin_reloads_with_safe_mode(tiny):
    from nlpapps import export

    model = export.load_keras(tiny[0])
    pieces = tiny[2]["data"]["vocabulary"]["target"]  # the specials (start 2) among them
    logits = model.predict([np.array([[5, 6, 7]], "int32"), np.array([[2, 9]], "int32")], verbose=0)
    assert logits.shape == (1, 2, pieces) and np.all(np.isfinite(logits))


# ------------------------------------------------------------------------------- subword pieces


def default_test_split():
    """The (English, French) pairs of the shipped test split under the default recipe's limits."""
    cuts = stream.cuts_of((0.8, 0.1, 0.1))
    return [
        (r["en"], r["fr"])
        for r in shipped_pairs()
        if 0 < len(r["en"].split()) <= 20
        and 0 < len(r["fr"].split()) <= 30
        and stream.SPLITS[stream.split_of(r["en"], 13, cuts)] == "test"
    ]


@pytest.mark.parametrize("side", ["source", "target"])
def test_in_graph_wordpiece_gives_the_librarys_pieces_and_the_text_back(tiny, side):
    """On every sentence of the default test split (accents, and words the tiny vocabulary of 400
    learned pieces and single characters never saw whole), the core-TF WordPiece gives the ids of
    Hugging Face `tokenizers` with the export's vocabulary, and detokenizing the pieces gives the
    text back (whitespace aside)."""
    import tensorflow as tf

    from nlpapps.tasks.translate import wordpiece

    vocabulary = (tiny[0] / f"{side}_vocab.txt").read_text().splitlines()
    assert len(vocabulary) >= 400 and vocabulary[:4] == list(wordpiece.SPECIALS)
    pairs = default_test_split()
    sentences = [pair[side == "target"] for pair in pairs]
    assert len(sentences) > 1000 and any("é" in fr for _, fr in pairs)
    library = wordpiece.library_tokenizer(vocabulary)
    ours = wordpiece.WordPiece(vocabulary)(tf.constant(sentences))
    assert ours.to_list() == [e.ids for e in library.encode_batch(sentences)]
    assert sum(len(row) for row in ours.to_list()) > 1.5 * sum(len(s.split()) for s in sentences)  # pieces
    ids = ours.to_tensor()
    text = wordpiece.WordPiece(vocabulary).detokenize(ids, ids > wordpiece.END).numpy()
    known = [i for i, row in enumerate(ours.to_list()) if wordpiece.UNK not in row]
    assert len(known) > 0.99 * len(sentences)
    assert all("".join(text[i].decode().split()) == "".join(sentences[i].split()) for i in known)


def test_unseen_words_and_other_scripts_are_read_piece_by_piece():
    import tensorflow as tf

    from nlpapps.tasks.translate import wordpiece

    vocabulary = wordpiece.learn([r["en"] for r in shipped_pairs()[:2000]], 300)
    library = wordpiece.library_tokenizer(vocabulary)
    texts = ["Xqzzv blorptangle, wibbleforth!", "神说：要有光。 Свет!", "", "a\u00a0b\u2009c\u3000d", "x" * 150 + " ok"]
    texts += ["Don't—«quoted»…", "tab\tand\nnewline", "Naïve café"]
    ours = wordpiece.WordPiece(vocabulary)(tf.constant(texts)).to_list()
    assert ours == [e.ids for e in library.encode_batch(texts)]
    assert wordpiece.UNK not in ours[0] and len(ours[0]) > 6  # unseen words, in pieces
    assert ours[4][0] == wordpiece.UNK and wordpiece.UNK not in ours[4][1:]  # over MAX_CHARS characters


# ---------------------------------------------------------------------- another pair, tfds source


def test_another_column_pair_trains_from_a_users_tsv(tmp_path):
    """French → English from a user's TSV with its own column names, another column beside them, and
    some blank rows."""
    path = tmp_path / "pairs.tsv"
    rows = [r for r in shipped_pairs() if len(r["fr"].split()) <= 6][:400]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(["verse", "french", "english"])
        writer.writerows([[r["ref"], r["fr"], r["en"]] for r in rows] + [["x", "Bonjour.", ""], ["y", "", "Hello."]])
    export, output, meta = train(
        [
            "translate",
            "--data",
            path,
            "--set",
            "data.source_column=french",
            "--set",
            "data.target_column=english",
            "--epochs",
            "1",
        ],
        tmp_path / "out",
    )
    assert "(french → english)" in output and "skipped 2 with a blank side" in output
    assert meta["data"]["columns"] == ["french", "english"]
    result = run_nlpapps(["translate", "--model", export, "Au commencement, Dieu créa les cieux et la terre."])
    assert result.returncode == 0 and len(result.stdout.decode().splitlines()) == 1


def test_tfds_translation_datasets_give_pairs_by_language_code(tmp_path):
    import tensorflow_datasets as tfds

    builder = tfds.builder("ted_hrlr_translate/pt_to_en", data_dir=str(tmp_path / "tfds"))
    builder.info.set_splits(
        tfds.core.SplitDict(
            [
                tfds.core.SplitInfo(name=name, shard_lengths=[20], num_bytes=0)
                for name in ("train", "validation", "test")
            ]
        )
    )
    os.makedirs(builder.data_dir)
    builder.info.write_to_directory(builder.data_dir)
    with tfds.testing.mock_data(num_examples=20, data_dir=str(tmp_path / "tfds")):
        source = stream.Source(
            "tfds:ted_hrlr_translate/pt_to_en", {"source": "pt", "target": "en"}, texts=("source", "target")
        )
        profile = source.profile(100, max_bad_rows=0.0)
        test = [pair for batch in source.batches(2) for pair in zip(*batch)]
        with pytest.raises(Exception, match="no field 'de'; fields are: pt, en"):
            stream.Source("tfds:ted_hrlr_translate/pt_to_en", {"source": "de", "target": "en"})
    assert profile.sizes == [20, 20, 20] and len(profile.samples["target"]) == 20  # tfds' own splits
    assert len(test) == 20 and all(isinstance(s, str) and isinstance(t, str) for s, t in test)


# ------------------------------------------------------------------------------------ bad input


def one_line_error(result):
    assert result.returncode == 2, result.stdout.decode() + result.stderr.decode()
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nlpapps: error: "), lines
    return lines[0]


def write_tsv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f, delimiter="\t").writerows(rows)
    return path


@pytest.mark.parametrize(
    "rows, columns, message",
    [
        ([["en", "de"], ["Hello.", "Hallo."]] * 20, [], "no column 'fr'"),
        ([["en", "fr"], *[["Hello.", ""]] * 30], [], "no pair within the length limits"),
        ([["en", "fr"], ["Hello.", "Bonjour."]], [], "too few rows"),
    ],
    ids=["missing-column", "blank-targets", "one-row"],
)
def test_bad_pairs_files_end_with_one_line(tmp_path, rows, columns, message):
    path = write_tsv(tmp_path / "pairs.tsv", rows)
    line = one_line_error(run_nlpapps(["run", "translate", "--data", path, *columns, "--output", tmp_path / "out"]))
    assert message in line
    assert not (tmp_path / "out" / "translate").exists() or not any(
        p.name.isdigit() for p in (tmp_path / "out" / "translate").iterdir()
    )


def test_bad_translate_options_end_with_one_line(tiny, tmp_path):
    path = tiny[0]
    assert "--beam" in one_line_error(run_nlpapps(["translate", "--model", path, "--beam", "0", "Hello."]))
    assert "no trained translate model" in one_line_error(run_nlpapps(["translate", "--models", tmp_path, "Hi."]))
    assert "unknown setting" in one_line_error(run_nlpapps(["run", "translate", "--set", "model.atention=dot"]))
    assert "model.attention" in one_line_error(run_nlpapps(["run", "translate", "--set", "model.attention=luong"]))
    assert "decode.beam_width" in one_line_error(run_nlpapps(["run", "translate", "--set", "decode.beam_width=0"]))
