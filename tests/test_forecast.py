"""Streaming forecast end to end: one tiny model trained per session on a slice of the shipped
weather, its export (stepping equals the whole-sequence forecast in a TensorFlow-only process; any
floats in, finite forecasts out), the .keras twin, the `forecast` command (--input, --stream through
a real pipe), a daily CSV with other column names, and one-line errors for bad input."""

import csv
import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TF_ONLY, invoke, last_json_line, run_nlpapps

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

SHIPPED_WEATHER = Path(__file__).resolve().parent.parent / "nlpapps" / "data" / "shipped" / "nyc_weather_2013.csv.gz"
# A tiny GRU on sequences of 4 days, one member (the ensemble has a test of its own); about 20 s on 2 cores.
SMALL = [
    "--set",
    "model.ensemble=1",
    "--epochs",
    "2",
    "--units",
    "8",
    "--set",
    "model.horizon=6",
    "--set",
    "train.window=96",
    "--set",
    "train.stride=24",
    "--set",
    "train.batch_size=8",
]
FEATURES = ["temp", "dewp", "humid", "wind_dir", "wind_speed", "precip", "pressure", "visib"]


def weather_rows(station="EWR"):
    with gzip.open(SHIPPED_WEATHER, "rt", encoding="utf-8") as f:
        return [r for r in csv.DictReader(f) if r["origin"] == station]


def write_csv(path, rows, columns=None):
    columns = columns or list(rows[0])
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="session")
def weather_slice(tmp_path_factory):
    """Sixty days of EWR and JFK readings, as shipped (NA cells, both stations interleaved by time)."""
    rows = sorted(weather_rows("EWR")[2000:3440] + weather_rows("JFK")[2000:3440], key=lambda r: r["time_hour"])
    return write_csv(tmp_path_factory.mktemp("weather") / "slice.csv", rows)


@pytest.fixture(scope="session")
def forecast_run(tmp_path_factory, weather_slice):
    root = tmp_path_factory.mktemp("forecast_models")
    pooled = ["--set", 'data.train_stations=["EWR","JFK"]']
    result = invoke(["run", "forecast", "--data", weather_slice, *SMALL, *pooled, "--output", root])
    assert result.exit_code == 0, f"training failed:\n{result.output}\n{result.exception!r}"
    return root / "forecast" / "1", result.output


@pytest.fixture(scope="session")
def export_path(forecast_run):
    return forecast_run[0]


@pytest.fixture(scope="session")
def meta(export_path):
    return json.loads((export_path / "metadata.json").read_text())


@pytest.fixture(scope="session")
def loaded(export_path):
    import tensorflow as tf

    return tf.saved_model.load(str(export_path))


# ------------------------------------------------------------------------------ training and export


def test_run_prints_both_tables_against_the_baselines(forecast_run):
    path, output = forecast_run
    assert output.rstrip().endswith(f"exported forecast model to {path}")
    assert "station EWR" in output and "every 1 hour" in output
    assert "pooled: the training period of station JFK" in output
    assert "temp, dewp as departures from their trailing mean" in output
    quantities = output[output.index("quantities, in the data's units") : output.index("events (skill")]
    assert "seasonal: one day earlier, 24 steps" in quantities
    for word in ("model_mae", "persistence_mae", "seasonal_mae", "model_rmse", "model_bias"):
        assert word in quantities
    assert [line.split()[:2] for line in quantities.splitlines()[3:]] == [["temp", h] for h in ("1", "3", "6")]
    validation = output[output.index("validation period") : output.index("test period")]  # to choose recipes by
    for word in ("model_mae", "persistence_mae", "seasonal_mae", "model_skill", "logreg_skill"):
        assert word in validation
    events = output[output.index("events (skill") :]
    for word in ("climatology_brier", "model_skill", "persistence_skill", "logreg_skill", "model_auc"):
        assert word in events


def test_export_layout_and_plots(export_path):
    for name in ("saved_model.pb", "metadata.json", "model.keras"):
        assert (export_path / name).is_file(), name
    for name in ("training_curves.png", "forecast.png", "reliability.png"):
        data = (export_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000, name


def test_metadata_names_features_targets_units_and_interval(meta):
    assert meta["task"] == "forecast"
    assert [f["name"] for f in meta["features"]] == FEATURES
    assert {f["name"]: f["unit"] for f in meta["features"]}["temp"] == "°F"
    assert [f["name"] for f in meta["features"] if f["angle"]] == ["wind_dir"]
    assert [(t["name"], t["kind"], t["unit"]) for t in meta["targets"]] == [
        ("temp", "quantity", "°F"),
        ("precip>0", "event", "probability"),
    ]
    assert meta["interval"] == "1 hour" and meta["interval_seconds"] == 3600 and meta["horizon"] == 6
    assert meta["state"] == ["last_reading", "trailing_mean", "h1"] and meta["station"] == "EWR"
    assert meta["anomalies"]["features"] == ["temp", "dewp"]
    assert meta["quantiles"]["outputs"] == {"forecast_p10": 0.1, "forecast_p90": 0.9}
    assert meta["quantiles"]["targets"] == ["temp"]
    margin = np.array(meta["quantiles"]["margin"])  # from the validation period: [horizon, quantities]
    assert margin.shape == (6, 1) and np.isfinite(margin).all()
    steps = meta["data"]["steps"]
    assert sum(steps.values()) == 1440 and steps["train"] > steps["validation"] > 0
    rows = meta["metrics"]["quantities"]
    assert [r["h"] for r in rows] == [1, 3, 6]
    for row in rows:
        assert 0 < row["persistence_mae"] <= row["persistence_rmse"]
        assert abs(row["model_bias"]) <= row["model_mae"] and abs(row["seasonal_bias"]) <= row["seasonal_mae"]
        assert 0 <= row["model_coverage80"] <= 1 and row["model_width80"] > 0
    # persistence is nearly right one hour ahead and worse six hours ahead
    assert rows[0]["persistence_mae"] < rows[-1]["persistence_mae"]
    for row in meta["metrics"]["events"]:
        assert 0 <= row["rate"] <= 1 and row["climatology_brier"] > 0


def test_the_refit_trains_for_the_epoch_count_validation_chose(forecast_run, meta):
    """The default refit: after the validated fit, the training and validation periods train a model
    for the epochs that had the best validation loss; its forecasts are the test period's."""
    epochs = int(np.argmin(meta["history"]["val_loss"])) + 1
    assert meta["refit"]["epochs"] == epochs and len(meta["refit"]["history"]["loss"]) == epochs
    assert (
        f"refit: trained again from the same initial weights on training + validation, epochs: {epochs}"
        in (forecast_run[1])
    )
    assert "s the validated fit" in forecast_run[1] and "s the refit)" in forecast_run[1]


# Runs in a fresh interpreter that may import tensorflow and nothing of nlpapps.
STEP_SCRIPT = (
    TF_ONLY
    + r"""
import numpy as np
import tensorflow as tf

m = tf.saved_model.load(sys.argv[1])
readings = np.array(json.loads(sys.argv[2]), dtype="float32")  # [batch, time, features], NaN missing
seconds = np.array(json.loads(sys.argv[3]), dtype="float64")
whole = m.signatures["forecast"](readings=tf.constant(readings), time=tf.constant(seconds))
state = m.signatures["initial_state"](batch_size=tf.constant(readings.shape[0]))
stepped, low, high = [], [], []
for t in range(readings.shape[1]):
    out = m.signatures["step"](reading=tf.constant(readings[:, t]), time=tf.constant(seconds[:, t]), **state)
    state = {k: out[k] for k in state}
    stepped.append(out["forecast"].numpy())
    low.append(out["forecast_p10"].numpy())
    high.append(out["forecast_p90"].numpy())
print(json.dumps({
    "stepped": np.stack(stepped, 1).tolist(), "whole": whole["forecasts"].numpy().tolist(),
    "stepped_p10": np.stack(low, 1).tolist(), "whole_p10": whole["forecasts_p10"].numpy().tolist(),
    "stepped_p90": np.stack(high, 1).tolist(), "whole_p90": whole["forecasts_p90"].numpy().tolist(),
    "last": whole["forecast"].numpy().tolist(),
    "step_inputs": sorted(m.signatures["step"].structured_input_signature[1]),
    "forecast_inputs": sorted(m.signatures["forecast"].structured_input_signature[1]),
    "nlpapps_imported": sorted(k for k in sys.modules if k.split(".")[0] == "nlpapps"),
}))
"""
)


def test_stepping_equals_the_whole_sequence_forecast_in_a_tensorflow_only_process(weather_slice, export_path):
    rows = weather_rows("EWR")[5000:5060]
    readings = [[float(r[f]) if r[f] != "NA" else float("nan") for f in FEATURES] for r in rows]
    readings[0][6] = readings[10][0] = readings[11][0] = float("nan")  # missing first and in a row
    import pandas as pd

    seconds = [pd.Timestamp(r["time_hour"]).timestamp() for r in rows]
    batch = [readings, readings[::-1]]  # two streams at once
    out = last_json_line(STEP_SCRIPT, export_path, json.dumps(batch), json.dumps([seconds, seconds[::-1]]), timeout=180)
    stepped, whole = np.array(out["stepped"]), np.array(out["whole"])
    assert stepped.shape == whole.shape == (2, 60, 6, 2)
    assert np.isfinite(whole).all()
    # to 1e-5, relative where the value exceeds 1: float32 keeps about 7 digits of 96.37 °F
    np.testing.assert_allclose(stepped, whole, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(np.array(out["last"]), whole[:, -1], atol=0)
    assert out["step_inputs"] == ["h1", "last_reading", "reading", "time", "trailing_mean"]
    assert out["forecast_inputs"] == ["readings", "time"]
    assert out["nlpapps_imported"] == []
    # the temperature's 10 % and 90 % quantiles, stepped as the whole sequence gives them, in order
    low, high = np.array(out["whole_p10"]), np.array(out["whole_p90"])
    assert low.shape == high.shape == (2, 60, 6, 1) and (low <= high).all()
    np.testing.assert_allclose(np.array(out["stepped_p10"]), low, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(np.array(out["stepped_p90"]), high, atol=1e-5, rtol=1e-5)
    # temperatures in °F, probabilities in [0, 1]
    assert 0 < np.median(whole[..., 0]) < 110 and (0 <= whole[..., 1]).all() and (whole[..., 1] <= 1).all()


def test_the_same_weather_warmer_gets_the_same_forecast_warmer(loaded):
    """temp and dewp are read as departures from their trailing mean (data.anomalies): shifted by
    10 °F, a week of readings gets a temperature forecast 10 °F higher and the same rain
    probabilities. The level of the months trained on cannot pull the forecast toward itself."""
    import pandas as pd
    import tensorflow as tf

    rows = weather_rows("EWR")[5000:5168]
    readings = np.array([[float(r[f]) if r[f] != "NA" else np.nan for f in FEATURES] for r in rows], "float32")
    readings[20:23, 0] = np.nan  # carried forward, shifted as the reading before them
    seconds = tf.constant([[pd.Timestamp(r["time_hour"]).timestamp() for r in rows]], tf.float64)
    warmer = readings + np.array([10, 10, 0, 0, 0, 0, 0, 0], "float32")
    base, shifted = (
        loaded.signatures["forecast"](readings=tf.constant(x[None]), time=seconds)["forecasts"].numpy()[0]
        for x in (readings, warmer)
    )
    np.testing.assert_allclose(shifted[..., 0], base[..., 0] + 10, atol=1e-3)
    np.testing.assert_allclose(shifted[..., 1], base[..., 1], atol=1e-5)


def test_an_ensemble_averages_its_members_and_steps_like_its_whole_sequence_forecast(weather_slice, tmp_path):
    small = [*SMALL, "--epochs", "1", "--units", "4", "--set", "model.ensemble=2", "--set", "data.train_stations=[]"]
    small += ["--set", "data.anomalies=[]"]  # every reading as it is: no trailing mean in the state
    result = invoke(["run", "forecast", "--data", weather_slice, *small, "--output", tmp_path])
    assert result.exit_code == 0, f"training failed:\n{result.output}\n{result.exception!r}"
    path = tmp_path / "forecast" / "1"
    meta = json.loads((path / "metadata.json").read_text())
    assert meta["state"] == ["last_reading", "h1", "h1_2"]
    rows = weather_rows("EWR")[5000:5030]
    readings = [[float(r[f]) if r[f] != "NA" else float("nan") for f in FEATURES] for r in rows]
    import pandas as pd

    seconds = [pd.Timestamp(r["time_hour"]).timestamp() for r in rows]
    out = last_json_line(STEP_SCRIPT, path, json.dumps([readings]), json.dumps([seconds]), timeout=180)
    np.testing.assert_allclose(np.array(out["stepped"]), np.array(out["whole"]), atol=1e-5, rtol=1e-5)
    assert out["step_inputs"] == ["h1", "h1_2", "last_reading", "reading", "time"]
    # the twin: the mean of two members that start from different weights
    from nlpapps import export

    model = export.load_keras(path)
    assert model.get_layer("stack").weights[0].shape == model.get_layer("stack_2").weights[0].shape
    assert not np.allclose(model.get_layer("stack").weights[0].numpy(), model.get_layer("stack_2").weights[0].numpy())
    x = np.array(readings, "float32")[None]
    x = np.where(np.isnan(x), 0.0, x)
    t = np.array(seconds)[None]
    out = model([x, t], training=False)
    members = [
        model.get_layer(f"heads{s}")(
            [model.get_layer(f"stack{s}")(model.get_layer("encode")([x, t]))[0], model.get_layer("encode")([x, t])]
        )
        for s in ("", "_2")
    ]
    np.testing.assert_allclose(
        np.asarray(out["events"]), (np.asarray(members[0]["events"]) + np.asarray(members[1]["events"])) / 2, atol=1e-6
    )


def test_nan_reading_is_carried_forward(loaded):
    import tensorflow as tf

    rows = weather_rows("EWR")[4000:4030]
    readings = np.array([[float(r[f]) if r[f] != "NA" else np.nan for f in FEATURES] for r in rows], "float32")
    seconds = np.arange(30, dtype="float64") * 3600 + 1.37e9
    gapped = readings.copy()
    gapped[-1] = np.nan  # the last reading lost: same as repeating the one before it
    repeated = readings.copy()
    repeated[-1] = np.where(np.isnan(readings[-2]), repeated[-1], readings[-2])
    repeated[-1] = np.where(np.isnan(repeated[-1]), readings[-3], repeated[-1])
    f = loaded.signatures["forecast"]
    a = f(readings=tf.constant(gapped[None]), time=tf.constant(seconds[None]))["forecast"].numpy()
    b = f(readings=tf.constant(repeated[None]), time=tf.constant(seconds[None]))["forecast"].numpy()
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_keras_twin_reloads_with_safe_mode_and_matches(export_path, loaded, meta):
    import tensorflow as tf

    from nlpapps import export
    from nlpapps.tasks import forecast

    model = export.load_keras(export_path)
    rows = weather_rows("EWR")[3000:3048]
    readings = np.array([[float(r[f]) if r[f] != "NA" else 0.0 for f in FEATURES] for r in rows], "float32")
    seconds = np.arange(48, dtype="float64") * 3600 + 1.37e9
    # The twin reads what the model reads: temp and dewp as departures (data.anomalies).
    settings = {k.split(".")[1]: v for k, v in meta["recipe"].items() if k.startswith("data.")}
    out = model([forecast.model_inputs(readings, settings)[None], seconds[None]], training=False)
    served = loaded.signatures["forecast"](readings=tf.constant(readings[None]), time=tf.constant(seconds[None]))
    probability = np.asarray(out["events"])[0, -1, :, 0]
    np.testing.assert_allclose(probability, served["forecast"].numpy()[0, :, 1], atol=1e-5)


def test_signatures_give_finite_forecasts_for_any_floats(loaded, meta):
    """Arbitrary finite floats and NaN readings and times, batches of 0, 1 and many: no crash, and
    finite forecasts of the right shape."""
    import tensorflow as tf
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp

    n_features, horizon = len(meta["features"]), meta["horizon"]
    value = st.one_of(st.floats(width=32, allow_nan=True, allow_infinity=False), st.just(float("nan")))

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(batch=st.sampled_from([0, 1, 3]), steps=st.integers(1, 6), data=st.data())
    def check(batch, steps, data):
        readings = data.draw(hnp.arrays("float32", (batch, steps, n_features), elements=value))
        seconds = data.draw(
            hnp.arrays("float64", (batch, steps), elements=st.one_of(st.floats(-1e12, 1e12), st.just(float("nan"))))
        )
        out = loaded.signatures["forecast"](readings=tf.constant(readings), time=tf.constant(seconds))
        assert out["forecast"].shape == (batch, horizon, 2) and np.isfinite(out["forecast"].numpy()).all()
        state = loaded.signatures["initial_state"](batch_size=tf.constant(batch))
        step = loaded.signatures["step"](reading=tf.constant(readings[:, 0]), time=tf.constant(seconds[:, 0]), **state)
        assert step["forecast"].shape == (batch, horizon, 2) and np.isfinite(step["forecast"].numpy()).all()
        assert all(np.isfinite(step[k].numpy()).all() for k in state)
        for name in ("forecast_p10", "forecast_p90"):
            assert out[name].shape == step[name].shape == (batch, horizon, 1) and np.isfinite(step[name].numpy()).all()

    check()


def test_a_sequence_of_no_readings_is_refused_by_name(loaded, meta, export_path, tmp_path):
    """The forecast follows the last reading: with none there is none, and the caller is told so,
    whether through TensorFlow or the command line."""
    import tensorflow as tf

    readings, seconds = tf.zeros([2, 0, len(meta["features"])]), tf.zeros([2, 0], tf.float64)
    with pytest.raises(tf.errors.InvalidArgumentError, match="at least one reading"):
        loaded.signatures["forecast"](readings=readings, time=seconds)
    header_only = write_csv(tmp_path / "empty.csv", [], ["time_hour", "origin", *FEATURES])
    result = invoke(["forecast", "--model", export_path, "--input", header_only])
    assert result.exit_code == 2 and "no readings" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1


# ----------------------------------------------------------------------------------- the command line


def test_forecast_input_prints_the_forecast_after_the_last_row(export_path, tmp_path, loaded):
    rows = weather_rows("EWR")[6000:6048]
    path = write_csv(tmp_path / "last_days.csv", rows)
    result = invoke(["forecast", "--model", export_path, "--input", path])
    assert result.exit_code == 0, result.output
    header, line = result.output.strip().splitlines()
    temps, rains = [f"temp+{h}[°F]" for h in range(1, 7)], [f"precip>0+{h}[probability]" for h in range(1, 7)]
    bands = [f"temp:forecast_{q}+{h}[°F]" for q in ("p10", "p90") for h in range(1, 7)]  # metadata's quantiles
    assert header.split(",") == ["time", *temps, *rains, *bands, "status"]
    fields = line.split(",")
    assert fields[0].startswith("2013-09-") and len(fields) == 26 and fields[-1] == "new"
    low, high = np.array(fields[13:19], float), np.array(fields[19:25], float)
    assert (low <= high).all()
    temps = [float(v) for v in fields[1:7]]
    assert all(-20 < v < 120 for v in temps)


def test_stream_through_a_pipe_warns_on_bad_rows_and_goes_on(export_path, tmp_path):
    rows = weather_rows("EWR")[6000:6012]
    text = tmp_path / "feed.csv"
    write_csv(text, rows)
    lines = text.read_text().splitlines()
    lines.insert(5, "this is, not a, reading")  # garbage
    lines[8] = lines[8].replace(lines[8].split(",")[5], "hot", 1)  # temp not a number
    feed = "\n".join(lines) + "\n"
    proc = run_nlpapps(["forecast", "--model", str(export_path), "--stream"], input=feed.encode())
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    out = proc.stdout.decode().splitlines()
    assert out[0].startswith("time,temp+1")
    assert len(out) == 1 + 13  # one line per row, the garbage line included
    assert all(len(line.split(",")) == 26 for line in out[1:])  # with the temperature's 10 % and 90 % quantiles
    assert out[5] == out[4].replace(",new", ",stands")  # the garbage line: skipped, the forecast stands
    warnings = [w for w in proc.stderr.decode().splitlines() if w.startswith("nlpapps: warning:")]
    assert any("line 6" in w and "fields" in w and "row skipped" in w for w in warnings)
    assert any("line 9" in w and "temp = 'hot'" in w for w in warnings)
    assert "Traceback" not in proc.stderr.decode()
    # the stream's last line is the --input forecast over the same rows
    result = invoke(["forecast", "--model", export_path, "--input", write_csv(tmp_path / "same.csv", rows)])
    whole = result.output.strip().splitlines()[-1].split(",")
    np.testing.assert_allclose(
        [float(v) for v in out[-1].split(",")[1:-1]], [float(v) for v in whole[1:-1]], atol=2e-3, rtol=1e-3
    )


def test_stream_steps_by_time_through_missing_and_repeated_rows(loaded, meta):
    """A missing hour is stepped through carried forward, as a row with the time and no values is; a
    repeated or earlier row is skipped and the forecast stands. Time decides the steps, as in training."""
    from nlpapps.cli import forecast_io as forecast

    rows = weather_rows("EWR")[6000:6012]
    blanked = [dict(r, **{f: "" for f in FEATURES}) if i == 5 else r for i, r in enumerate(rows)]

    def streamed(feed):
        lines = [",".join(rows[0])] + [",".join(r.values()) for r in feed]
        warnings = []
        rows_read = forecast.Rows(meta, "stdin", warnings.append)
        write = forecast.Lines(meta, forecast.output_shapes(loaded.signatures["step"]))
        out = list(forecast.stream(lines, loaded.signatures, rows_read, write))
        return [line.rsplit(",", 1)[0] for line in out[1:]], warnings

    whole, _ = streamed(blanked)
    gap, gap_warnings = streamed(rows[:5] + rows[6:])
    assert gap == whole[:5] + whole[6:]
    assert gap_warnings == [f"line 7: 1 reading(s) missing before {rows[6]['time_hour'][:19]}+00:00; carried forward"]
    plain, _ = streamed(rows)
    repeated, repeated_warnings = streamed(rows[:4] + [rows[3], rows[1]] + rows[4:])
    assert repeated == plain[:4] + [plain[3], plain[3]] + plain[4:]
    assert repeated_warnings[0].startswith("line 6: time 2013-09-")
    assert "is not after the previous reading's" in repeated_warnings[0]
    assert [w.endswith("row skipped, the forecast stands") for w in repeated_warnings] == [True, True]


def test_list_shows_the_forecast_model(export_path):
    result = invoke(["list", "--models", export_path.parent.parent])
    assert result.exit_code == 0
    assert "forecast" in result.output.splitlines()[0]
    assert f"{export_path}  forecast" in result.output


def test_a_daily_csv_with_other_column_names_trains_with_settings_alone(tmp_path):
    """Daily means of another station under other names, a date column, two comment lines first."""
    import pandas as pd

    frame = pd.DataFrame(weather_rows("LGA")).replace("NA", np.nan)
    frame["day"] = pd.to_datetime(frame["time_hour"]).dt.date
    for c in ("temp", "precip", "wind_speed", "humid"):
        frame[c] = frame[c].astype(float)
    daily = (
        frame.groupby("day")
        .agg(tmean=("temp", "mean"), rain=("precip", "sum"), wind=("wind_speed", "mean"), rh=("humid", "mean"))
        .reset_index()
    )
    path = tmp_path / "daily.csv"
    path.write_text("# daily means\n# LaGuardia 2013\n" + daily.rename(columns={"day": "date"}).to_csv(index=False))
    root = tmp_path / "models"
    result = invoke(
        [
            "run",
            "forecast",
            "--data",
            path,
            "--set",
            "data.time_column=date",
            "--set",
            "data.skip_rows=2",
            "--set",
            'data.features=["tmean","rain","wind","rh"]',
            "--set",
            'data.targets=["tmean","rain > 0"]',
            "--set",
            "model.horizon=3",
            "--set",
            "train.window=60",
            "--set",
            "train.stride=10",
            "--epochs",
            "1",
            "--units",
            "8",
            "--output",
            root,
        ]
    )
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    assert "every 1 day" in result.output and "one week earlier, 7 steps" in result.output
    meta = json.loads((root / "forecast" / "1" / "metadata.json").read_text())
    assert meta["interval"] == "1 day" and [t["name"] for t in meta["targets"]] == ["tmean", "rain>0"]
    assert meta["state"] == ["last_reading", "h1", "h1_2"]  # two members; no temp or dewp to read as departures
    assert "as departures" not in result.output
    assert meta["station"] in ("EWR", "")


# ------------------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    rows = weather_rows("EWR")[:200]
    no_time = write_csv(folder / "no_time.csv", rows, [c for c in rows[0] if c != "time_hour"])
    text = [dict(r) for r in rows]
    text[50]["pressure"] = "high"
    duplicated = rows[:100] + rows[99:]
    unsorted = rows[:100] + [rows[101], rows[100]] + rows[102:]
    return {
        "no time column": (no_time, []),
        "unknown target": (write_csv(folder / "ok.csv", rows), ["--set", 'data.targets=["temperature"]']),
        "non-numeric value": (write_csv(folder / "text.csv", text), []),
        "duplicated timestamps": (write_csv(folder / "dup.csv", duplicated), []),
        "unsorted timestamps": (write_csv(folder / "unsorted.csv", unsorted), []),
        "too little data": (write_csv(folder / "short.csv", rows[:40]), []),
        "bidirectional": (folder / "ok.csv", ["--bidirectional"]),
        "angle as an anomaly": (folder / "ok.csv", ["--set", 'data.anomalies=["wind_dir"]']),
        "event column as an anomaly": (folder / "ok.csv", ["--set", 'data.anomalies=["temp","precip"]']),
        "a removed key": (folder / "ok.csv", ["--set", "train.burn_in=168"]),
    }


EXPECTED = {
    "no time column": "no time column 'time_hour'",
    "unknown target": "no column 'temperature'",
    "non-numeric value": "non-numeric value 'high' in row 51",
    "duplicated timestamps": "duplicated timestamp",
    "unsorted timestamps": "not sorted",
    "too little data": "too short",
    "bidirectional": "cannot read the future",
    "angle as an anomaly": "data.anomalies: 'wind_dir' is an angle or an event's column",
    "event column as an anomaly": "data.anomalies: 'precip' is an angle or an event's column",
    "a removed key": "train.burn_in was removed: every step of a training window is scored; leave it out",
}


@pytest.mark.parametrize("case", list(EXPECTED))
def test_bad_input_is_one_line_exit_2(case, bad_files, tmp_path):
    path, extra = bad_files[case]
    args = ["run", "forecast", "--data", str(path), *extra, "--epochs", "1", "--output", str(tmp_path)]
    if case == "bidirectional":  # refused by the recipe check, before TensorFlow loads: the real script
        proc = run_nlpapps(args)
        code, err = proc.returncode, proc.stderr.decode()
    else:  # in-process: the same click group, without another TensorFlow start-up
        result = invoke(args)
        code, err = result.exit_code, result.stderr
    assert code == 2, err[-2000:]
    assert err.count("\n") == 1 and err.startswith("nlpapps: error: "), err
    assert EXPECTED[case] in err
    assert not (tmp_path / "forecast").exists() or not any((tmp_path / "forecast").glob("[0-9]*"))


def test_forecast_input_errors_are_one_line(export_path, tmp_path):
    rows = weather_rows("EWR")[:30]
    for path, expected in (
        (write_csv(tmp_path / "x.csv", rows, ["origin", "temp"]), "no time column"),
        (tmp_path / "missing.csv", "not found"),
    ):
        result = invoke(["forecast", "--model", export_path, "--input", path])
        assert result.exit_code == 2 and expected in result.output, result.output
    result = invoke(["forecast", "--model", export_path])
    assert result.exit_code == 2 and "--input FILE or --stream" in result.output
    # `tail -f` starts at a file's last ten lines, without its header
    headerless = "".join(",".join(r.values()) + "\n" for r in rows[-10:])
    result = invoke(["forecast", "--model", export_path, "--stream"], input=headerless)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
    assert "has no time column 'time_hour'" in result.stderr and "tail -n +1 -f FILE" in result.stderr


# --------------------------------------------------------------------------- series and baselines


def test_gaps_are_interpolated_angles_through_north_and_long_gaps_refused():
    import pandas as pd

    from nlpapps.data import series
    from nlpapps.errors import UserError

    index = pd.date_range("2013-01-01", periods=6, freq="h", tz="UTC")
    frame = pd.DataFrame({"temp": [1.0, np.nan, 3.0, 4.0, 5.0, 6.0], "dir": [350.0, np.nan, 10.0, 10, 10, 10]}, index)
    filled, observed = series.fill_gaps(frame, max_gap=1, angles=["dir"])
    assert filled["temp"].iloc[1] == 2.0 and not observed["temp"].iloc[1]
    assert min(filled["dir"].iloc[1], 360 - filled["dir"].iloc[1]) < 1e-6  # north, not 180°
    frame.iloc[1:4, 0] = np.nan
    with pytest.raises(UserError, match="'temp' is missing for 3 steps in a row"):
        series.fill_gaps(frame, max_gap=2)
    frame["temp"] = np.nan
    with pytest.raises(UserError, match="'temp' has no values"):
        series.fill_gaps(frame, max_gap=2)


def test_departures_from_an_exponential_trailing_mean_whole_or_one_step_at_a_time():
    import pandas as pd
    import tensorflow as tf

    from nlpapps.data import series

    x = np.random.default_rng(0).normal(20, 5, (2, 50, 3)).astype("float32")
    none_yet = tf.fill([2, 1], np.nan)
    whole, last = series.departures(tf.constant(x), [1], 0.1, none_yet)
    mean = pd.DataFrame(x[:, :, 1].T).ewm(alpha=0.1, adjust=False).mean().to_numpy().T  # starts at the first
    np.testing.assert_allclose(whole.numpy()[..., 1], x[..., 1] - mean, atol=1e-4)
    np.testing.assert_array_equal(whole.numpy()[..., [0, 2]], x[..., [0, 2]])  # other columns as they are
    np.testing.assert_allclose(last.numpy()[:, 0], mean[:, -1], rtol=1e-6)
    state, steps = none_yet, []
    for t in range(50):
        out, state = series.departures(tf.constant(x[:, t : t + 1]), [1], 0.1, state)
        steps.append(out.numpy())
    np.testing.assert_allclose(np.concatenate(steps, 1), whole.numpy(), atol=1e-5)


def test_pooled_stations_train_only_before_the_validation_period(weather_slice):
    """Other stations' readings join the training sequences only up to where the recipe station's
    validation period starts: nothing of the periods scored is ever trained on."""
    from nlpapps import recipes
    from nlpapps.tasks import forecast

    recipe = recipes.load(
        "forecast", [f"data.source={weather_slice}", 'data.train_stations=["EWR","JFK","XYZ"]', "model.horizon=6"]
    )
    data = forecast.prepare(recipe, log=lambda _: None)
    logged = []
    parts = forecast.other_stations(recipe, data, logged.append)
    assert len(parts) == 1 and logged == [  # a station the file lacks is left out, and said so
        f"pooled: no station XYZ of data.train_stations in {weather_slice}; left out",
        f"pooled: the training period of station JFK, {len(parts[0].readings)} steps",
    ]
    a = data.bounds[0]
    assert parts[0].seconds.max() < data.seconds[a] and len(parts[0].readings) > a // 2
    assert not np.array_equal(parts[0].readings[:100], data.readings[:100])  # JFK's own readings
    # A file without the station column has nothing to pool.
    no_column = ["data.station_column=site", 'data.train_stations=["EWR","JFK"]']
    assert (
        forecast.other_stations(recipes.load("forecast", [f"data.source={weather_slice}", *no_column]), data, print)
        == []
    )


def test_the_refit_trains_on_the_validation_period_and_the_first_fit_does_not(weather_slice):
    from nlpapps import recipes
    from nlpapps.tasks.forecast import data as forecast_data
    from nlpapps.tasks.forecast import model as forecast_model

    recipe = recipes.load("forecast", [f"data.source={weather_slice}", "model.horizon=6", "train.window=96"])
    data = forecast_data.prepare(recipe, log=lambda _: None)
    a, b, _ = data.bounds
    scale = forecast_data.change_scale(data, recipe["data"]["features"], a)
    seen = {}
    for name, stop in (("first", a), ("refit", b)):
        batches, steps = forecast_model.training_batches(recipe, data, [], scale, stop)
        seen[name] = np.concatenate([np.asarray(x[1]).reshape(-1) for x, _ in batches])
        assert steps == len(list(batches))
    # Windows and their targets (horizon steps on) end before `stop`.
    assert seen["first"].max() <= data.seconds[a - 6 - 1]
    assert data.seconds[a] <= seen["refit"].max() <= data.seconds[b - 6 - 1]
    assert np.isin(data.seconds[a : b - 6], seen["refit"]).mean() > 0.9  # the validation rows trained on


def test_baselines_persistence_seasonal_naive_and_event_persistence():
    from nlpapps import evaluation

    values = np.arange(10.0)
    assert evaluation.persistence(values, 2)[3].tolist() == [3.0, 3.0]
    seasonal = evaluation.seasonal_naive(values, season=4, horizon=5)
    assert seasonal[5].tolist() == [2.0, 3.0, 4.0, 5.0, 2.0]  # t+h one season back; beyond it two seasons
    assert np.isnan(seasonal[0, 0])
    now = np.array([1, 1, 0, 0, 0, 0], bool)
    future = np.array([[1.0], [0.0], [0.0], [0.0], [1.0], [0.0]])
    assert evaluation.event_persistence(now, future, np.array([True, False])).tolist() == [[0.5], [0.25]]
    assert evaluation.brier_skill([1, 0], [1, 0], [0.5, 0.5]) == 1.0


def test_a_conformal_margin_from_one_period_covers_its_level_of_the_next():
    """Persistence as a zero-width interval over the shipped EWR year: the margin taken on the
    first half holds about 80 % of the second half's truth at every horizon; an interval already
    too wide gets a negative margin (narrowed)."""
    from nlpapps import evaluation
    from nlpapps.tasks.forecast.scores import interval_margin

    with gzip.open(SHIPPED_WEATHER, "rt") as f:
        temp = np.array([float(r["temp"]) for r in csv.DictReader(f) if r["origin"] == "EWR" and r["temp"] != "NA"])
    horizon, half = 6, len(temp) // 2
    forecast = evaluation.persistence(temp, horizon)
    truth = np.stack([np.r_[temp[h:], np.full(h, np.nan)] for h in range(1, horizon + 1)], 1)
    margin = interval_margin(truth[:half], forecast[:half], forecast[:half], 0.8)
    assert margin.shape == (horizon,) and (np.diff(margin) > 0).all()  # later steps, wider
    later = slice(half, None)
    inside = np.abs(truth[later] - forecast[later]) <= margin
    coverage = np.nanmean(np.where(np.isfinite(truth[later]), inside, np.nan), 0)
    assert ((0.72 < coverage) & (coverage < 0.88)).all(), coverage
    wide = interval_margin(truth[:half], forecast[:half] - 100, forecast[:half] + 100, 0.8)
    assert (wide < -90).all()


@pytest.mark.parametrize(
    "override, words",
    [
        ("model.bidirectional=true", "model.bidirectional = True: a streaming forecast cannot read the future"),
        ('data.time_features=["week"]', 'may hold only "day" and "year"'),
        ("model.horizon=0", "model.horizon = 0: must be at least 1"),
        ('data.train_stations=["EWR","EWR"]', "must be distinct station names"),
        ('data.train_stations=[""]', "must be distinct station names"),
        ("train.carry_state=true", "train.carry_state was removed: every training window starts from zeros"),
        ("model.memory=168", "model.memory was removed: the state runs on over the whole stream"),
        ("data.changes=[1]", "data.changes was removed: the model reads each reading as it is"),
        ("data.anomalies_too=[]", "data.anomalies_too was removed: data.anomalies reads a feature as its departure"),
        ("train.quantity_loss=mae", "train.quantity_loss was removed: quantities train on the squared error"),
    ],
)
def test_recipe_values_a_forecast_cannot_use_are_refused_up_front(override, words):
    from nlpapps import recipes
    from nlpapps.errors import UserError

    with pytest.raises(UserError, match=words.replace("(", r"\(")):
        recipes.load("forecast", [override])
    recipes.load("sentiment", ["model.bidirectional=true"])  # the same key stays allowed elsewhere


# ------------------------------------------------------------------------------------- backtest


def test_references_on_a_pure_daily_cycle():
    """Adjusted persistence and the climatology-persistence mix forecast a repeating day exactly;
    persistence and the same hour yesterday as their definitions say; rain climatology by hour."""
    import pandas as pd

    from nlpapps.tasks.forecast import references

    index = pd.date_range("2013-01-01", periods=24 * 20, freq="h", tz="UTC")
    hours = index.hour.to_numpy()
    values = 50 + 10 * np.sin(2 * np.pi * hours / 24)
    seconds = (index - pd.Timestamp(0, tz="UTC")).total_seconds().to_numpy()
    phases = references.phase(seconds, pd.Timedelta(1, "h"), 24)
    assert (phases == hours).all()
    truth = np.stack([np.r_[values[h:], np.full(h, np.nan)] for h in range(1, 7)], 1)
    adjusted = references.adjusted_persistence(values, 24, 6)
    assert np.isnan(adjusted[0]).all()  # no week of history yet
    np.testing.assert_allclose(adjusted[24 * 7 : -6], truth[24 * 7 : -6], atol=1e-9)
    mix = references.climatology_mix(values, phases, 24, 24 * 10, [1, 3, 6], 6)
    np.testing.assert_allclose(mix[:-6, [0, 2, 5]], truth[:-6, [0, 2, 5]], atol=1e-6)
    rain = ((hours[:, None] + np.arange(1, 7)) % 24 < 6).astype(float)  # rain from midnight to six, every day
    climate = references.event_climatology(rain, phases, 24, 24 * 10, 6)
    np.testing.assert_allclose(climate, rain, atol=1e-9)


def test_backtest_prints_the_table_writes_json_and_png_and_resumes_at_its_fold(weather_slice, tmp_path):
    small = ["model.ensemble=1", "model.units=4", "model.horizon=6", "train.window=96", "train.batch_size=8"]
    small.append('data.train_stations=["EWR","JFK"]')
    args = ["backtest", "forecast", "--data", str(weather_slice), "--folds", "2", "--epochs", "1"]
    args += [*(a for s in small for a in ("--set", s)), "--output", str(tmp_path)]
    result = invoke(args)
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    folder = next((tmp_path / "forecast").glob("backtest-*"))
    summary = json.loads((folder / "backtest.json").read_text())
    assert summary["horizons"] == [1, 3, 6] and len(summary["folds"]) == 2
    mae = summary["quantity"]["mae"]
    assert set(mae) == {"model", "persistence", "same_hour", "adjusted", "mix", "trees"}
    assert all(0 < v < 20 for name, values in mae.items() if name != "model" for v in values)
    assert all(np.isfinite(mae["model"]))  # one epoch of four units: finite, not good
    assert mae["persistence"][0] < mae["persistence"][2]  # an hour ahead is easier than six
    assert all(0 <= c <= 1 for c in summary["quantity"]["coverage80"])
    assert set(summary["event"]["skill"]) == {"model", "persistence", "logreg"}
    png = (folder / "backtest.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
    for words in ("fold 1/2:", "fold 2/2:", "MAE pooled over 2 folds", "÷persistence range", "per fold"):
        assert words in result.output
    # Killed in its second fold: the next run reads the first and trains the second again, alone.
    (folder / "fold_2.npz").unlink()
    again = invoke(args)
    assert again.exit_code == 0, again.output
    assert "fold 1/2: done before, read from fold_1.npz" in again.output
    assert "fold 2/2: done before" not in again.output and again.output.count("fold: ") == 1
    assert json.loads((folder / "backtest.json").read_text())["quantity"]["mae"]["persistence"] == mae["persistence"]


def test_backtest_of_a_task_without_one_is_one_line(tmp_path):
    result = invoke(["backtest", "sentiment", "--output", str(tmp_path)])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "only forecast recipes have a backtest" in result.stderr
