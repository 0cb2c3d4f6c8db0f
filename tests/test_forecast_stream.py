"""Training as the forecast is served: streams of consecutive windows whose state is carried from
one batch to the next (train.carry_state), and the refit on training + validation (train.refit)."""

import json

import numpy as np
import pytest
from conftest import invoke

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
SMALL = ["model.horizon=3", "model.units=8", "model.head_units=8", "train.batch_size=2", "model.ensemble=1"]


@pytest.fixture(scope="module")
def shipped():
    """The shipped EWR series prepared as the default recipe prepares it (horizon 3), its encoder and
    the scale of its temperature changes."""
    from nlpapps import recipes
    from nlpapps.data import series
    from nlpapps.tasks import forecast

    recipe = recipes.load("forecast", SMALL)
    data = forecast.prepare(recipe, log=lambda _: None)
    features, a = recipe["data"]["features"], data["bounds"][0]
    angles = [f in recipe["data"]["angles"] for f in features]
    encoder = series.fitted_encoder(data["readings"][:a], data["seconds"][:a], angles, ["day"])
    delta = forecast.changes(data, features)[:a]
    return recipe, data, encoder, (np.nanmean(delta, 0), np.nanstd(delta, 0) + 1e-6)


def test_state_carried_across_windows_gives_the_loss_of_one_long_window(shipped):
    """Two consecutive windows, the second starting from the state the first ended with, give the
    forecasts and the loss of one window over both; a row marked fresh starts again from zeros."""
    import keras

    from nlpapps import recipes
    from nlpapps.tasks import forecast

    _, data, encoder, scale = shipped
    recipe = recipes.load("forecast", [*SMALL, "train.carry_state=true"])
    keras.utils.set_random_seed(3)
    m, t = recipe["model"], recipe["train"]
    trainer, model = forecast.build(encoder, len(recipe["data"]["features"]), data["targets"], m, t, 1)
    length, begin = 40, 2000
    steps = slice(begin, begin + 2 * length)
    x = np.repeat(data["readings"][None, steps], 2, 0)
    s = np.repeat(data["seconds"][None, steps], 2, 0)
    first = trainer([x[:, :length], s[:, :length], np.ones(2, "float32")], training=True)
    # Row 0 goes on from its state; row 1 is marked fresh, as a stream's first window is.
    second = trainer([x[:, length:], s[:, length:], np.array([0.0, 1.0], "float32")], training=True)
    whole = model([x[:1], s[:1]], training=False)
    alone = model([x[:1, length:], s[:1, length:]], training=False)
    y = forecast.member_targets(data, recipe["data"]["features"], scale, 1)
    losses = {"quantities": keras.losses.MeanSquaredError(), "events": keras.losses.BinaryCrossentropy()}
    for kind, loss in losses.items():
        carried = np.concatenate([np.asarray(first[kind][0]), np.asarray(second[kind][0])])
        np.testing.assert_allclose(carried, np.asarray(whole[kind][0]), atol=1e-5)
        np.testing.assert_allclose(np.asarray(second[kind][1]), np.asarray(alone[kind][0]), atol=1e-5)
        truth = y[kind][steps][None]
        halves = (
            float(loss(truth[:, :length], first[kind][:1])) + float(loss(truth[:, length:], second[kind][:1]))
        ) / 2
        assert abs(halves - float(loss(truth, whole[kind]))) < 1e-5
    # Out of training (validation) a window starts from zeros whatever came before.
    again = trainer([x[:, length:], s[:, length:], np.zeros(2, "float32")], training=False)
    np.testing.assert_allclose(np.asarray(again["quantities"][0]), np.asarray(alone["quantities"][0]), atol=1e-5)


def test_streams_run_each_row_window_after_window_and_restart_it_fresh_at_a_span_end():
    from nlpapps.data import series

    readings = np.arange(100, dtype="float32")[:, None]
    spans, length = [(0, 40), (40, 95)], 10
    epochs = []
    for epoch in range(2):
        ds = series.streams(readings, np.arange(100.0), {"q": readings}, spans, length, 4, 12, [13, epoch])
        batches = [(x.numpy()[:, :, 0], f.numpy(), y["q"].numpy()[:, :, 0]) for (x, _, f), y in ds]
        assert len(batches) == 12 and all(x.shape == (4, length) for x, _, _ in batches)
        starts = np.array([x[:, 0] for x, _, _ in batches]).astype(int)  # [batch, row]
        fresh = np.array([f for _, f, _ in batches]).astype(bool)
        assert fresh[0].all()
        for x, _, y in batches:  # every window lies inside one span, its targets aligned with it
            assert np.array_equal(x, y)
            assert all(any(lo <= w[0] and w[-1] < hi for lo, hi in spans) for w in x)
        for i in range(1, 12):
            goes_on = starts[i] == starts[i - 1] + length
            assert goes_on[~fresh[i]].all()  # a row goes on from its last window, or starts afresh...
            assert all(start in (0, 40) for start in starts[i][fresh[i]])  # ...at a span's start
        assert fresh[1:].any()
        epochs.append(starts)
    assert not np.array_equal(*epochs)  # each epoch cuts the windows elsewhere


@pytest.mark.parametrize("carry", [True, False])
def test_the_refit_trains_on_the_validation_period_and_the_first_fit_does_not(shipped, carry):
    from nlpapps import recipes
    from nlpapps.tasks import forecast

    recipe, data, _, scale = shipped
    recipe = recipes.load("forecast", [*SMALL, f"train.carry_state={str(carry).lower()}"])
    a, b, _ = data["bounds"]
    horizon = recipe["model"]["horizon"]
    seen = {}
    for name, stop in (("first", a), ("refit", b)):
        batches, steps = forecast.training_batches(recipe, data, [], scale, stop)
        epoch = batches(0) if callable(batches) else batches
        times = np.concatenate([np.asarray(x[1]).reshape(-1) for x, _ in epoch])
        seen[name] = times
        assert steps == len(list(epoch))
    # Windows and their targets (horizon steps on) end before `stop`.
    assert seen["first"].max() <= data["seconds"][a - horizon - 1]
    assert data["seconds"][a] <= seen["refit"].max() <= data["seconds"][b - horizon - 1]
    assert np.isin(data["seconds"][a : b - horizon], seen["refit"]).mean() > 0.9  # the validation rows trained on


def test_carrying_state_refuses_a_strategy_that_splits_the_batch(tmp_path):
    args = ["run", "forecast", "--strategy", "mirrored", "--set", "train.carry_state=true", "--output", str(tmp_path)]
    result = invoke(args)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "train.carry_state = true" in result.stderr
    assert "train.strategy = mirrored" in result.stderr


def test_burn_in_windows_start_earlier_in_their_span_and_score_only_the_window():
    from nlpapps.data import series

    readings = np.arange(100, dtype="float32")[:, None]
    ds = series.windows(readings, np.arange(100.0), {"q": readings}, [(0, 40), (40, 95)], 10, 5, 64, burn_in=6)
    (x, _), y, weight = next(iter(ds))
    x = x.numpy()[:, :, 0]
    assert x.shape[1] == 16 and np.array_equal(x, y["q"].numpy()[:, :, 0])
    assert weight.numpy()[0, :, 0].tolist() == [0.0] * 6 + [1.0] * 10
    assert x[:, 0].tolist() == [0, 5, 10, 15, 20, 40, 45, 50, 55, 60, 65, 70, 75]  # burn-in from the span start on
    assert all((w[-1] < 40) == (w[0] < 40) for w in x)  # none crosses from one span into the next


# ------------------------------------------------- `nlpapps forecast`: --input and --stream read alike

FORECAST_SMALL = [
    *("--epochs", "2", "--units", "8"),
    *("--set", "model.ensemble=1", "--set", "model.horizon=3", "--set", "train.window=96"),
    *("--set", "train.stride=24", "--set", "train.batch_size=8"),
]


@pytest.fixture(scope="module")
def weather(tmp_path_factory):
    """Sixty days of the shipped EWR readings as a CSV (its header and rows as text), and a tiny model
    trained on them."""
    import csv
    import gzip

    from conftest import SHIPPED_SENTIMENT

    shipped = SHIPPED_SENTIMENT.parent / "nyc_weather_2013.csv.gz"
    with gzip.open(shipped, "rt", encoding="utf-8", newline="") as f:
        lines = [line.rstrip("\r\n") for line in f]
    header, rows = lines[0], [line for line in lines[1:] if line.startswith("EWR,")][2000:3440]
    folder = tmp_path_factory.mktemp("weather")
    (folder / "slice.csv").write_text("\n".join([header, *rows]) + "\n")
    result = invoke(["run", "forecast", "--data", folder / "slice.csv", *FORECAST_SMALL, "--output", folder])
    assert result.exit_code == 0, f"training failed:\n{result.output}\n{result.exception!r}"
    assert next(csv.reader([header]))[-1] == "time_hour"
    return folder / "forecast" / "1", header, rows[-30:]


class Run:
    """A `forecast` command's exit code, stdout and stderr, run in-process."""

    def __init__(self, result):
        self.returncode, self.stdout, self.stderr = result.exit_code, result.stdout_bytes, result.stderr_bytes


def both_ways(export, lines, tmp_path, *flags):
    """`forecast --input FILE` and `forecast --stream < FILE` on the same lines: (input, stream) runs."""
    path = tmp_path / "readings.csv"
    path.write_text("".join(f"{line}\n" for line in lines))
    given = invoke(["forecast", "--model", export, "--input", path, *flags])
    streamed = invoke(["forecast", "--model", export, "--stream", *flags], input=path.read_bytes())
    return Run(given), Run(streamed)


def warnings_of(proc):
    return [line for line in proc.stderr.decode().splitlines() if line.startswith("nlpapps: warning:")]


def test_a_missing_feature_column_is_refused_alike(weather, tmp_path):
    export, header, rows = weather
    names = header.split(",")
    drop = names.index("temp")
    lines = [",".join(c for i, c in enumerate(line.split(",")) if i != drop) for line in [header, *rows]]
    for proc in both_ways(export, lines, tmp_path):
        err = proc.stderr.decode()
        assert proc.returncode == 2 and err.count("\n") == 1, err
        assert "the header has no column 'temp', a reading the model needs" in err
        assert proc.stdout == b""


def test_garbage_repeated_and_earlier_rows_are_warned_about_and_skipped_alike(weather, tmp_path):
    export, header, rows = weather
    messy = [header, *rows[:10], "this is, not a, reading", rows[9], rows[4], *rows[10:]]
    given, streamed = both_ways(export, messy, tmp_path)
    assert given.returncode == 0 and streamed.returncode == 0, given.stderr.decode() + streamed.stderr.decode()
    warned = warnings_of(given)
    assert warned == warnings_of(streamed)
    assert [w.split(":")[2].strip() for w in warned] == ["line 12", "line 13", "line 14"]
    assert "fields where the header has" in warned[0]
    assert "is not after the previous reading's" in warned[1] and "is not after" in warned[2]
    clean, _ = both_ways(export, [header, *rows], tmp_path)
    assert given.stdout == clean.stdout  # the skipped rows change nothing
    last = streamed.stdout.decode().splitlines()[-1].split(",")
    whole = given.stdout.decode().splitlines()[-1].split(",")
    assert last[0] == whole[0] and last[-1] == whole[-1] == "new"
    np.testing.assert_allclose([float(v) for v in last[1:-1]], [float(v) for v in whole[1:-1]], atol=2e-3, rtol=1e-3)
    out = streamed.stdout.decode().splitlines()
    assert len(out) == 1 + len(messy) - 1  # a line for every row
    assert [line.split(",")[-1] for line in out[11:14]] == ["stands"] * 3  # the skipped rows, marked
    assert [line.rsplit(",", 1)[0] for line in out[11:14]] == [out[10].rsplit(",", 1)[0]] * 3


def test_the_header_gives_units_the_help_says_what_plus_h_means_and_json_names_them(weather, tmp_path):
    export, header, rows = weather
    given, streamed = both_ways(export, [header, *rows[:3]], tmp_path)
    names = given.stdout.decode().splitlines()[0].split(",")
    assert names == [
        "time",
        *(f"temp+{h}[°F]" for h in (1, 2, 3)),
        *(f"precip>0+{h}[probability]" for h in (1, 2, 3)),
        "status",
    ]
    assert streamed.stdout.decode().splitlines()[0] == ",".join(names)
    help_text = invoke(["forecast", "--help"]).output
    assert '"+h" is h of the model\'s steps' in help_text and "1 hour" in help_text
    given, streamed = both_ways(export, [header, *rows[:3]], tmp_path, "--json")
    objects = [json.loads(line) for line in streamed.stdout.decode().splitlines()]
    whole = json.loads(given.stdout)
    assert len(objects) == 3 and whole["time"] == objects[-1]["time"]
    for name, target in whole["targets"].items():
        np.testing.assert_allclose(target["forecast"], objects[-1]["targets"][name]["forecast"], atol=2e-3, rtol=1e-3)
    assert objects[-1]["status"] == "new" and objects[-1]["step"] == "1 hour"
    assert objects[-1]["targets"]["temp"]["unit"] == "°F" and len(objects[-1]["targets"]["temp"]["forecast"]) == 3
    assert set(objects[-1]["targets"]) == {"temp", "precip>0"}


@pytest.mark.parametrize("content, words", [("", "empty; expected a CSV header"), (None, "no readings")])
def test_empty_input_is_said_alike(weather, tmp_path, content, words):
    export, header, _ = weather
    for proc in both_ways(export, [] if content == "" else [header], tmp_path):
        err = proc.stderr.decode()
        assert proc.returncode == 2 and err.count("\n") == 1 and words in err, err
        assert proc.stdout == b""
