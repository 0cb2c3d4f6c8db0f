"""A reference for the forecast's quantity bars: how close to persistence and seasonal naive a strong
tabular learner gets on the same readings, periods and horizons as the recurrent model.

    python benchmarks/forecast_reference.py [--set KEY=VALUE ...]

Per horizon h, scikit-learn's gradient-boosted trees (absolute error) predict the first quantity's
change over h steps from the current readings, their changes over 1, 2, 3, 6, 12 and 24 steps, the
time of day and, with --neighbours, the other pooled stations' readings at the same time (their
departure from the station's, and their change over 3 steps). Fitted on the training period and
scored on validation, then fitted on training + validation and scored on test, as the recipe's refit
is; with --folds N, fitted before and scored on each of forecast_folds.py's periods instead. Prints each
MAE next to both baselines' and the ratios the issue's bars name.
"""

import argparse

import numpy as np
import pandas as pd
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


def lagged(frame, d, interval, neighbours):
    readings = numeric_readings(frame, d)
    columns = [readings] + [(readings - readings.shift(lag)).add_suffix(f"_change{lag}") for lag in LAGS]
    hours = (frame.index.hour + frame.index.minute / 60).to_numpy()
    columns.append(
        pd.DataFrame(
            {"day_sin": np.sin(2 * np.pi * hours / 24), "day_cos": np.cos(2 * np.pi * hours / 24)}, frame.index
        )
    )
    for station in neighbours:
        other, _, _ = series.load(d["source"], {**d, "station": station}, d["features"], interval, station)
        other, _ = series.fill_gaps(other, 10**6, d["angles"], station)
        other = numeric_readings(other.reindex(frame.index), d)
        columns += [
            (other - readings).add_suffix(f"_{station}"),
            (other - other.shift(3)).add_suffix(f"_{station}_change3"),
        ]
    return pd.concat(columns, axis=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", default=[], help="a recipe override (repeatable)")
    parser.add_argument("--neighbours", action="store_true", help="add the other stations of data.train_stations")
    parser.add_argument("--folds", type=int, default=0, help="score forecast_folds.py's periods instead")
    args = parser.parse_args()
    recipe = recipes.load("forecast", args.set)
    d = recipe["data"]
    data = forecast.prepare(recipe, log=lambda line: None)
    target = next(column for _, column, threshold in data["targets"] if threshold is None)
    season, _ = forecast.season_of(data["interval"], len(data["frame"]))
    neighbours = [s for s in d["train_stations"] if s != d["station"]] if args.neighbours else []
    x = lagged(data["frame"], d, data["interval"], neighbours)
    level = data["frame"][target].to_numpy()
    a, b, n = data["bounds"]
    periods = [("validation", a, b), ("test", b, n)]
    if args.folds:
        origins, length = fold_origins(data, args.folds)
        periods = [(f"{data['frame'].index[o]:%Y-%m-%d}", o, o + length) for o in origins]
    print(
        f"reference for {target!r}: gradient-boosted trees, neighbours: {', '.join(neighbours) or 'none'}; each period "
        "scored by trees fitted on every step before it"
    )
    print("period      h   reference  persistence  seasonal  ÷persistence  ÷seasonal")
    for h in (h for h in HORIZONS if h <= recipe["model"]["horizon"]):
        change = np.r_[level[h:] - level[:-h], np.full(h, np.nan)]
        for period, start, end in periods:
            fitted = slice(max(LAGS), start - h)  # no target reaches into the scored period
            scored = slice(max(start, season - h), end - h)
            trees = HistGradientBoostingRegressor(
                loss="absolute_error", max_iter=400, learning_rate=0.05, random_state=0
            )
            trees.fit(x.iloc[fitted], change[fitted])
            truth = level[scored.start + h : scored.stop + h]
            reference = np.mean(np.abs(level[scored] + trees.predict(x.iloc[scored]) - truth))
            persistence = np.mean(np.abs(level[scored] - truth))
            seasonal = np.mean(np.abs(level[scored.start + h - season : scored.stop + h - season] - truth))
            print(
                f"{period:10}  {h:2d}  {reference:9.3f}  {persistence:11.3f}  {seasonal:8.3f}  "
                f"{reference / persistence:12.3f}  {reference / seasonal:9.3f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
