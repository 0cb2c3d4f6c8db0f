"""A reference for the forecast's quantity bars: how close to persistence and seasonal naive a strong
tabular learner gets on the same readings, periods and horizons as the recurrent model.

    python benchmarks/forecast_reference.py [--neighbours] [--pooled] [--history K] [--folds N]
        [--model EXPORT] [--set KEY=VALUE ...]

Per horizon h, scikit-learn's gradient-boosted trees (absolute error) predict the first quantity's
change over h steps from the current readings, their changes over 1, 2, 3, 6, 12 and 24 steps, the
time of day and, with --neighbours, the other pooled stations' readings at the same time (their
departure from the station's, and their change over 3 steps); --history K adds the quantity's last K
readings; --pooled fits the trees on the other pooled stations' rows too (each read with its own
neighbours), up to the same time. Fitted on the training period and scored on validation, then fitted
on training + validation and scored on test, as the recipe's refit is; with --folds N, fitted before
and scored on each of forecast_folds.py's periods instead. Prints each MAE next to both baselines' and
the ratios the issue's bars name; --model EXPORT adds, on the test period, a forecast export's own
ratios (its stream over the whole series, as the run scores it) and those of the mean of its forecast
and the trees' (not on validation, which a refit export, the default, was trained on).
"""

import argparse

import numpy as np
import pandas as pd
import tensorflow as tf
from forecast_folds import fold_origins
from sklearn.ensemble import HistGradientBoostingRegressor

from nlpapps import recipes
from nlpapps.data import series
from nlpapps.tasks import forecast

HORIZONS = (1, 3, 6, 12, 24)
LAGS = (1, 2, 3, 6, 12, 24)


def numeric_readings(frame, d):
    """The readings with each angle as the sine and cosine of its direction."""
    out = frame[d["features"]].copy()
    for angle in d["angles"]:
        radians = np.deg2rad(out.pop(angle))
        out[f"{angle}_sin"], out[f"{angle}_cos"] = np.sin(radians), np.cos(radians)
    return out


def station_frame(d, interval, station):
    other, _, _ = series.load(d["source"], {**d, "station": station}, d["features"], interval, station)
    return series.fill_gaps(other, 10**6, d["angles"], station)[0]


def lagged(frame, d, neighbours, target, history):
    """The trees' inputs at every step of `frame`; `neighbours`: other stations' frames, named by their
    order so that pooled stations' rows line up."""
    readings = numeric_readings(frame, d)
    columns = [readings] + [(readings - readings.shift(lag)).add_suffix(f"_change{lag}") for lag in LAGS]
    hours = (frame.index.hour + frame.index.minute / 60).to_numpy()
    columns.append(
        pd.DataFrame(
            {"day_sin": np.sin(2 * np.pi * hours / 24), "day_cos": np.cos(2 * np.pi * hours / 24)}, frame.index
        )
    )
    columns.append(pd.DataFrame({f"{target}_{k}_before": frame[target].shift(k) for k in range(1, history + 1)}))
    for i, other in enumerate(neighbours):
        other = numeric_readings(other.reindex(frame.index), d)
        columns += [(other - readings).add_suffix(f"_nb{i}"), (other - other.shift(3)).add_suffix(f"_nb{i}_change3")]
    return pd.concat(columns, axis=1)


def model_forecasts(path, data, target):
    """An export's forecast of `target` after every step of the series [T, horizon]."""
    signature = tf.saved_model.load(path).signatures["forecast"]
    out = signature(readings=tf.constant(data["readings"][None]), time=tf.constant(data["seconds"][None]))
    index = [column for _, column, _ in data["targets"]].index(target)
    return out["forecasts"].numpy()[0, :, :, index]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", default=[], help="a recipe override (repeatable)")
    parser.add_argument("--neighbours", action="store_true", help="add the other stations of data.train_stations")
    parser.add_argument("--pooled", action="store_true", help="fit on the other stations' rows too")
    parser.add_argument("--history", type=int, default=0, help="add the quantity's last K readings")
    parser.add_argument("--folds", type=int, default=0, help="score forecast_folds.py's periods instead")
    parser.add_argument("--model", help="a forecast export of the same recipe to score beside the trees")
    args = parser.parse_args()
    if args.model and args.folds:
        parser.error("--model scores the recipe's own periods; its export was trained on the folds' periods")
    recipe = recipes.load("forecast", args.set)
    d = recipe["data"]
    data = forecast.prepare(recipe, log=lambda line: None)
    target = next(column for _, column, threshold in data["targets"] if threshold is None)
    season, _ = forecast.season_of(data["interval"], len(data["frame"]))
    others = [s for s in d["train_stations"] if s != d["station"]]
    read_others = others if args.neighbours or args.pooled else []  # each load reads the whole file
    frames = {d["station"]: data["frame"], **{s: station_frame(d, data["interval"], s) for s in read_others}}
    fitted_on = [d["station"], *(others if args.pooled else [])]
    inputs = {
        s: lagged(frames[s], d, [frames[o] for o in frames if o != s] if args.neighbours else [], target, args.history)
        for s in fitted_on
    }
    level = data["frame"][target].to_numpy()
    modelled = model_forecasts(args.model, data, target) if args.model else None
    a, b, n = data["bounds"]
    periods = [("validation", a, b), ("test", b, n)]
    if args.folds:
        origins, length = fold_origins(data, args.folds)
        periods = [(f"{data['frame'].index[o]:%Y-%m-%d}", o, o + length) for o in origins]
    read = ", ".join(others) if args.neighbours else "none"
    print(
        f"reference for {target!r}: gradient-boosted trees, neighbours: {read}"
        f", fitted on {', '.join(fitted_on)}, history {args.history}; each period scored by trees fitted on every "
        "step before it" + (f"; model: {args.model}" if args.model else "")
    )
    print(
        "period      h   reference  persistence  seasonal  ÷persistence  ÷seasonal"
        + ("  model ÷pers  ÷seas  mean ÷pers  ÷seas" if args.model else "")
    )
    first = max(LAGS + (args.history,))
    for h in (h for h in HORIZONS if h <= recipe["model"]["horizon"]):
        for period, start, end in periods:
            when = data["frame"].index[start]
            x, y = [], []
            for s in fitted_on:  # no target reaches into the scored period
                values = frames[s][target].to_numpy()
                stop = frames[s].index.searchsorted(when) - h
                x.append(inputs[s].iloc[first:stop])
                y.append(values[first + h : stop + h] - values[first:stop])
            trees = HistGradientBoostingRegressor(
                loss="absolute_error", max_iter=400, learning_rate=0.05, random_state=0
            )
            trees.fit(pd.concat(x), np.concatenate(y))
            scored = slice(max(start, season - h), end - h)
            truth = level[scored.start + h : scored.stop + h]
            predicted = level[scored] + trees.predict(inputs[d["station"]].iloc[scored])
            persistence = np.mean(np.abs(level[scored] - truth))
            seasonal = np.mean(np.abs(level[scored.start + h - season : scored.stop + h - season] - truth))
            reference = np.mean(np.abs(predicted - truth))
            line = (
                f"{period:10}  {h:2d}  {reference:9.3f}  {persistence:11.3f}  {seasonal:8.3f}  "
                f"{reference / persistence:12.3f}  {reference / seasonal:9.3f}"
            )
            if modelled is not None and period == "test":  # validation trained a refit export
                own = np.mean(np.abs(modelled[scored, h - 1] - truth))
                mean = np.mean(np.abs((modelled[scored, h - 1] + predicted) / 2 - truth))
                line += (
                    f"  {own / persistence:11.3f}  {own / seasonal:5.3f}  {mean / persistence:10.3f}  "
                    f"{mean / seasonal:5.3f}"
                )
            print(line, flush=True)


if __name__ == "__main__":
    main()
