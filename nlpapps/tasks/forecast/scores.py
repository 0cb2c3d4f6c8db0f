"""The forecast's scores over one period against its baselines (the run's validation and test
tables), the 80 % interval's coverage, and the test week's plot."""

import numpy as np
import pandas as pd

from nlpapps import evaluation
from nlpapps.data import series
from nlpapps.tasks.forecast import references

HORIZONS = (1, 3, 6, 12, 24)  # horizon steps reported, those within the model's horizon


def horizons_within(horizon):
    return [h for h in HORIZONS if h <= horizon]


def interval_scores(truth, low, high):
    """The share of finite truth values within [low, high] and the interval's mean width."""
    keep = np.isfinite(truth)
    inside = (low[keep] <= truth[keep]) & (truth[keep] <= high[keep])
    return {"coverage": float(inside.mean()), "width": float((high[keep] - low[keep]).mean())}


def interval_margin(truth, low, high, level):
    """Split-conformal widening of the [low, high] interval (Romano et al. 2019, conformalized quantile
    regression): per column, the `level` quantile of how far each truth falls outside it (negative
    inside), with the finite-sample correction. Widened by it on later data the interval covers about
    `level` of the truth. Arrays [T, ...]; NaN truth is left out."""
    outside = np.where(np.isfinite(truth), np.maximum(low - truth, truth - high), np.nan)
    n = np.isfinite(outside).sum(0)
    corrected = np.minimum(1.0, np.ceil((n + 1) * level) / np.maximum(n, 1))
    flat = outside.reshape(len(outside), -1)
    margin = [np.nanquantile(c, q, method="higher") if np.isfinite(c).any() else 0.0 for c, q in
              zip(flat.T, corrected.reshape(-1))]
    return np.asarray(margin, np.float32).reshape(outside.shape[1:])


def now_events(frame, column, threshold, event_window):
    """Whether each step's event (column > threshold in its window) is happening: bool[T]."""
    now = pd.Series(frame[column].to_numpy(float) > threshold).rolling(event_window, min_periods=1).max()
    return now.to_numpy(bool)


def evaluate(data, predicted, quantiles, encoded, season, horizon, event_window, period=None):
    """Rows for the quantity and the event tables over `period` (start, stop; the test period by
    default), the reliability curves and each target's persistence for the plot. predicted: the
    model's forecasts after every step [T, horizon, K]; quantiles: its quantities' [T, horizon, Kq, 2]."""
    a, b, n = data.bounds
    b, n = period or (b, n)
    truth = np.where(data.future_seen, data.future, np.nan)
    test, q = slice(b, n), 0
    quantity_rows, event_rows, curves, plots = [], [], [], {}
    for k, (name, column, threshold) in enumerate(data.targets):
        values = data.frame[column].to_numpy(float)
        if threshold is None:
            baselines = {
                "persistence": evaluation.persistence(values, horizon),
                "seasonal": evaluation.seasonal_naive(values, season, horizon),
            }
            for h in horizons_within(horizon):
                row = {"target": name, "h": h}
                for label, forecast in (("model", predicted[:, :, k]), *baselines.items()):
                    scores = evaluation.errors(truth[test, h - 1, k], forecast[test, h - 1])
                    row.update({f"{label}_{name}": value for name, value in scores.items()})
                band = interval_scores(truth[test, h - 1, k], *(quantiles[test, h - 1, q, i] for i in (0, 1)))
                row.update({f"model_{key}80": value for key, value in band.items()})
                quantity_rows.append(row)
            plots[name], q = baselines["persistence"], q + 1
            continue
        rows, curve, plots[name] = _event_rows(
            data, predicted[:, :, k], truth[:, :, k], encoded, (a, b, n), k, event_window
        )
        event_rows += rows
        curves += curve
    return quantity_rows, event_rows, curves, plots


def _event_rows(data, predicted, truth, encoded, bounds, k, event_window):
    """One event's rows: Brier skill against climatology (the training frequency) of the model,
    persistence and the logistic regression, and their ROC AUC; its reliability curves."""
    a, b, n = bounds
    name, column, threshold = data.targets[k]
    horizon, test = truth.shape[1], slice(b, n)
    now = now_events(data.frame, column, threshold, event_window)
    climatology = np.nanmean(truth[:a], axis=0)
    baselines = {
        "persistence": references.event_persistence(now, truth, a),
        "logreg": references.logistic(encoded, truth, a, horizons_within(horizon)),
    }
    rows = []
    for h in horizons_within(horizon):
        y, reference = truth[test, h - 1], np.full(n - b, climatology[h - 1])
        row = {
            "target": name,
            "h": h,
            "rate": float(np.nanmean(y)),
            "climatology_brier": evaluation.brier(y, reference),
            "model_brier": evaluation.brier(y, predicted[test, h - 1]),
        }
        for label, forecast in (("model", predicted), *baselines.items()):
            row[f"{label}_skill"] = evaluation.brier_skill(y, forecast[test, h - 1], reference)
        for label, forecast in (("model", predicted), *baselines.items()):
            row[f"{label}_auc"] = evaluation.roc_auc(y, forecast[test, h - 1])
        rows.append(row)
    curves = [(f"{name} +{h}", truth[test, h - 1], predicted[test, h - 1]) for h in horizons_within(horizon)[:3]]
    return rows, curves, baselines["persistence"]


def plot_week(data, predicted, persistence, lead, path, description):
    """The first week of the test period: truth, the model's and persistence's forecasts made `lead` steps before."""
    _, b, n = data.bounds
    steps = min(n - b, max(lead + 2, round(7 * series.DAY / data.interval.total_seconds())))
    span = slice(b, b + steps)
    panels = []
    for k, (name, column, threshold) in enumerate(data.targets):
        truth = data.frame[column].to_numpy(float)
        if threshold is not None:
            truth = (truth > threshold).astype(float)
        made = np.arange(b, b + steps) - lead  # forecasts for these steps were made `lead` steps earlier
        panels.append(
            (
                name if threshold is None else f"P({name})",
                {
                    "truth": truth[span],
                    "model": predicted[made, lead - 1, k],
                    "persistence": persistence[name][made, lead - 1],
                },
            )
        )
    evaluation.plot_forecast(
        data.frame.index[span], panels, path, f"test period, forecasts made {lead} steps ahead ({description})"
    )
