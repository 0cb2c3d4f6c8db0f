"""References a forecast is judged against, each on the same readings and forecast times as the
model and each fitted (where it is fitted at all) on the steps before `stop` only. Forecast arrays
are [T, horizon]: row t holds the forecasts made at t for t+1 … t+horizon; NaN where a reference
does not forecast (a horizon not scored, the series' first steps)."""

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression

from nlpapps import evaluation
from nlpapps.data import series

LAGS = (1, 2, 3, 6, 12, 24)  # the trees read each reading's change over these steps
ADJUSTED_DAYS = 7  # adjusted persistence: the mean change over the same hours of this many days


def phase(seconds, interval, season):
    """Each step's place in its season (the hour of the day for hourly data): int[T]."""
    return (np.floor(seconds / interval.total_seconds()).astype(np.int64) % season).astype(int)


def climatology(values, phases, season, stop):
    """The mean of `values` at each phase over the steps before `stop` (the overall mean where a
    phase has none): float[season]."""
    known = np.isfinite(values[:stop])
    means = pd.Series(values[:stop][known]).groupby(phases[:stop][known]).mean()
    return means.reindex(range(season)).fillna(np.nanmean(values[:stop])).to_numpy(float)


def adjusted_persistence(values, season, horizon, days=ADJUSTED_DAYS):
    """The last value plus the mean change over the same h steps of each of the last `days` seasons
    (for t+h: values[t] + mean over k of values[t+h-k*season] - values[t-k*season]); no fitted
    parameters. For h <= season, NaN where the history is too short."""
    out = np.full((len(values), horizon), np.nan)
    for h in range(1, min(horizon, season) + 1):
        out[:, h - 1] = values + _mean_past_changes(values, season, h, days)
    return out


def _mean_past_changes(values, season, h, days):
    """For each t: the mean over k = 1..days of values[t+h-k*season] - values[t-k*season]."""
    n = len(values)
    total = np.zeros(n)
    for k in range(1, days + 1):
        back = k * season
        change = np.full(n, np.nan)
        if back < n:
            change[back:] = values[h : n - back + h] - values[: n - back]
        total += change
    return total / days


def climatology_mix(values, phases, season, stop, horizons, horizon):
    """Per horizon h, a linear mix of persistence and the climatology at t+h's phase, with its
    weights and intercept fitted on the steps before `stop` whose t+h precedes it."""
    clim = climatology(values, phases, season, stop)
    out = np.full((len(values), horizon), np.nan)
    for h in horizons:
        at = clim[(phases + h) % season]
        x = np.stack([values, at], 1)
        rows = np.arange(stop - h)
        keep = np.isfinite(x[rows]).all(1) & np.isfinite(values[rows + h])
        fitted = LinearRegression().fit(x[rows][keep], values[rows + h][keep])
        ok = np.isfinite(x).all(1)
        out[ok, h - 1] = fitted.predict(x[ok])
    return out


def lagged(frame, features, angles):
    """The trees' inputs at every step: the readings (angles as sine and cosine), their changes over
    LAGS steps and the time of day's sine and cosine."""
    readings = frame[features].copy()
    for angle in angles:
        radians = np.deg2rad(readings.pop(angle))
        readings[f"{angle}_sin"], readings[f"{angle}_cos"] = np.sin(radians), np.cos(radians)
    columns = [readings] + [(readings - readings.shift(lag)).add_suffix(f"_change{lag}") for lag in LAGS]
    turn = 2 * np.pi * (series.unix_seconds(frame.index) % series.DAY) / series.DAY
    columns.append(pd.DataFrame({"day_sin": np.sin(turn), "day_cos": np.cos(turn)}, frame.index))
    return pd.concat(columns, axis=1).to_numpy(float)


def trees(values, inputs, stop, horizons, horizon, seed=0):
    """Per horizon h, scikit-learn's gradient-boosted trees (absolute error) forecasting the change
    over h steps from lagged(...)'s inputs, fitted on the steps before `stop` whose t+h precedes it."""
    out = np.full((len(values), horizon), np.nan)
    first = max(LAGS)
    for h in horizons:
        rows = np.arange(first, stop - h)
        target = values[rows + h] - values[rows]
        keep = np.isfinite(target)
        model = HistGradientBoostingRegressor(
            loss="absolute_error", max_iter=400, learning_rate=0.05, early_stopping=True, random_state=seed
        )
        model.fit(inputs[rows][keep], target[keep])
        out[:, h - 1] = values + model.predict(inputs)
    return out


def event_climatology(truth, phases, season, stop, horizon):
    """P(event at t+h) as its frequency at t+h's phase (the hour of the day) before `stop`:
    float[T, horizon]. truth: the events at t+1 … t+horizon [T, horizon] (0/1, NaN unknown)."""
    clim = climatology(truth[:, 0], (phases + 1) % season, season, stop - 1)
    return np.stack([clim[(phases + h) % season] for h in range(1, horizon + 1)], 1)


def logistic(encoded, truth, stop, horizons):
    """P(event at t+h) from the current (encoded) reading by a logistic regression per horizon step
    fitted on the steps before `stop`: float[T, horizon], NaN at the steps not reported."""
    out = np.full(truth.shape, np.nan)
    for h in horizons:
        y = truth[: stop - h, h - 1]
        keep = np.isfinite(y)
        if len(np.unique(y[keep])) < 2:
            out[:, h - 1] = np.nanmean(y)
            continue
        fitted = LogisticRegression(max_iter=1000).fit(encoded[: stop - h][keep], y[keep].astype(int))
        out[:, h - 1] = fitted.predict_proba(encoded)[:, 1]
    return out


def event_persistence(now, truth, stop):
    """P(event at t+h | event at t or not), estimated before `stop`: float[T, horizon]."""
    return evaluation.event_persistence(now[:stop], truth[:stop], now)
