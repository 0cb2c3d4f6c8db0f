"""`nlpapps backtest forecast`: the recipe judged over rolling origins, as forecasting libraries
judge a model. The series after its first quarter is cut into `folds` test blocks (about a month
each on a year of hourly data); for each block a fresh model is trained on every step before it,
less a gap of one horizon (no training target reaches into the block), with the normalisation of
those steps, and forecasts after every step of the block. The references are fitted on the same
steps and forecast at the same times. Each fold's forecasts are saved as soon as it ends, so a
killed backtest resumes at the fold it was in (and a fit within it at its last epoch)."""

import hashlib
import json
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from threadpoolctl import threadpool_limits

from nlpapps import evaluation, training
from nlpapps.errors import UserError
from nlpapps.tasks.forecast import data as forecast_data
from nlpapps.tasks.forecast import model as forecast_model
from nlpapps.tasks.forecast import references, serving
from nlpapps.tasks.forecast.model import QUANTILES
from nlpapps.tasks.forecast.scores import horizons_within, interval_margin, now_events

FIRST = 0.25  # the share of the series before the first test block (three months of a year)
SIMPLE = ("persistence", "same_hour", "adjusted", "mix")  # the references with at most a linear fit
EVENT_REFERENCES = ("climatology", "persistence", "logreg")


def origins(n, folds):
    """The [start, stop) steps of each test block: the steps after the first quarter in `folds` equal blocks."""
    edges = np.linspace(round(n * FIRST), n, folds + 1).round().astype(int)
    return list(zip(edges[:-1].tolist(), edges[1:].tolist()))


def folder_of(recipe, output_root, folds, epochs):
    """The backtest's folder: one per recipe, fold count and epoch count, so the same command resumes."""
    key = json.dumps([recipe.settings, folds, epochs], sort_keys=True)
    return Path(output_root) / recipe.name / f"backtest-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def run(recipe, output_root, folds=9, epochs=12, log=print):
    """Backtest the recipe over `folds` rolling origins, each fold's model trained for `epochs`
    epochs; print the table and write backtest.json and backtest.png. Returns the folder."""
    forecast_data.check(recipe)
    # A fresh model per fold traces its functions anew, as meant: TensorFlow's retracing warnings are noise.
    tf.get_logger().setLevel("ERROR")
    data = forecast_data.prepare(recipe, log)
    blocks = origins(len(data.readings), folds)
    if blocks[0][0] - 2 * recipe["model"]["horizon"] < 8 or min(stop - start for start, stop in blocks) < 2:
        raise UserError(
            f"{recipe['data']['source']}: {len(data.readings)} steps are too few for {folds} folds after the first "
            f"quarter; give fewer --folds or more data"
        )
    folder = folder_of(recipe, output_root, folds, epochs)
    folder.mkdir(parents=True, exist_ok=True)
    log(
        f"backtest: {folds} folds of about {blocks[0][1] - blocks[0][0]} steps from {data.frame.index[blocks[0][0]]}, "
        f"each trained for {epochs} epochs on every step before it less a gap of {recipe['model']['horizon']}; "
        f"in {folder}"
    )
    for k, block in enumerate(blocks):
        path = folder / f"fold_{k + 1}.npz"
        if path.is_file():
            log(f"fold {k + 1}/{folds}: done before, read from {path.name}")
            continue
        started = time.perf_counter()
        arrays = fold(recipe, data, block, epochs, folder / "runs" / f"fold_{k + 1}", log)
        np.savez(folder / "partial.npz", **arrays)
        (folder / "partial.npz").rename(path)  # whole or not at all
        log(f"fold {k + 1}/{folds}: {fold_line(arrays)}; {time.perf_counter() - started:.0f} s")
    results = [dict(np.load(folder / f"fold_{k + 1}.npz")) for k in range(folds)]
    summary = summarise(recipe, data, blocks, results)
    log(table(summary))
    (folder / "backtest.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot(summary, results, folder / "backtest.png")
    return folder


def fold(recipe, data, block, epochs, workdir, log):
    """One fold: the model and the references fitted before the block's start less a horizon, and
    their forecasts after every step of the block, at the reported horizons."""
    d, horizon = recipe["data"], recipe["model"]["horizon"]
    start, stop = block
    keras.backend.clear_session()
    training.seed_everything(recipe["train"]["seed"])
    encoder, encoded = forecast_data.encoders(d, data, start - horizon)
    scale = forecast_data.change_scale(data, d["features"], start - horizon)
    parts = forecast_data.other_stations(recipe, data, lambda line: None, until=start)
    validation = forecast_model.validation_windows(recipe, data, d["features"], scale, 0, start).take(1)
    log(
        f"fold: {data.frame.index[start]} to {data.frame.index[stop - 1]}, trained on {start - horizon} steps"
        + (f" and {sum(len(p.readings) for p in parts)} of other stations" if parts else "")
    )
    model, _, _ = forecast_model.fit(recipe, data, encoder, scale, start, parts, validation, workdir, epochs)
    mean = tf.constant(np.nanmean(data.readings[: start - horizon], 0), "float32")
    endpoints, _ = serving.streaming_functions(model, d, data.targets, scale, mean)
    predicted, quantiles = serving.series_forecasts(endpoints, data)
    arrays = {"rows": np.arange(start, stop)}
    # One OpenMP thread for scikit-learn: beside TensorFlow's threads on a shared machine, more spin idle.
    with threadpool_limits(1):
        arrays.update(block_forecasts(recipe, data, encoded, predicted, quantiles, start, stop))
    return arrays


def block_forecasts(recipe, data, encoded, predicted, quantiles, start, stop):
    """The model's and the references' forecasts after every step of the block [start, stop), at
    the reported horizons: quantity_NAME, quantity_p10/p90 and quantity_truth for the first
    quantity target; event_NAME and event_truth for the first event."""
    horizon = recipe["model"]["horizon"]
    hs = np.array(horizons_within(horizon)) - 1
    block_rows = slice(start, stop)
    truth = np.where(data.future_seen, data.future, np.nan)
    arrays, kinds = {}, data.quantity
    if kinds.any():
        k = int(np.flatnonzero(kinds)[0])
        forecasts = quantity_references(recipe, data, start, horizon)
        forecasts["model"] = predicted[:, :, k]
        arrays.update({f"quantity_{name}": v[block_rows][:, hs] for name, v in forecasts.items()})
        arrays["quantity_truth"] = truth[block_rows, :, k][:, hs]
        arrays.update({f"quantity_{q}": quantiles[block_rows, :, 0, i][:, hs] for i, q in enumerate(("p10", "p90"))})
    if (~kinds).any():
        k = int(np.flatnonzero(~kinds)[0])
        forecasts = event_references(recipe, data, encoded, start, k)
        forecasts["model"] = predicted[:, :, k]
        arrays.update({f"event_{name}": v[block_rows][:, hs] for name, v in forecasts.items()})
        arrays["event_truth"] = truth[block_rows, :, k][:, hs]
    return arrays


def quantity_references(recipe, data, start, horizon):
    """The first quantity's references fitted before `start` less a horizon: {name: [T, horizon]}."""
    d = recipe["data"]
    column = next(c for _, c, t in data.targets if t is None)
    values = data.frame[column].to_numpy(float)
    season, _ = forecast_data.season_of(data.interval, len(values))
    phases = references.phase(data.seconds, data.interval, season)
    fitted_before, hs = start - horizon, horizons_within(horizon)
    out = {
        "persistence": evaluation.persistence(values, horizon),
        "same_hour": evaluation.seasonal_naive(values, season, horizon),
        "mix": references.climatology_mix(values, phases, season, fitted_before, hs, horizon),
        "trees": references.trees(
            values, references.lagged(data.frame, d["features"], d["angles"]), fitted_before, hs, horizon
        ),
    }
    if season * data.interval.total_seconds() == 86400:  # sub-daily: the same hours of the last days
        out["adjusted"] = references.adjusted_persistence(values, season, horizon)
    return out


def event_references(recipe, data, encoded, start, k):
    """Event k's references fitted before `start` less a horizon: {name: [T, horizon]}."""
    horizon = recipe["model"]["horizon"]
    _, column, threshold = data.targets[k]
    truth = np.where(data.future_seen, data.future, np.nan)[:, :, k]
    season, _ = forecast_data.season_of(data.interval, len(truth))
    phases = references.phase(data.seconds, data.interval, season)
    now = now_events(data.frame, column, threshold, recipe["data"]["event_window"])
    fitted_before = start - horizon
    return {
        "climatology": references.event_climatology(truth, phases, season, fitted_before, horizon),
        "persistence": references.event_persistence(now, truth, fitted_before),
        "logreg": references.logistic(encoded, truth, fitted_before, horizons_within(horizon)),
    }


def fold_line(arrays):
    """A fold's progress line: the model's and persistence's MAE at the horizons saved, rain skill."""
    out = []
    if "quantity_truth" in arrays:
        mae = {k: _mae(arrays, k) for k in ("model", "persistence")}
        out.append(f"MAE model {' / '.join(f'{v:.2f}' for v in mae['model'])}")
        out.append(f"persistence {' / '.join(f'{v:.2f}' for v in mae['persistence'])}")
    if "event_truth" in arrays:
        out.append(f"rain skill {' / '.join(f'{v:.2f}' for v in skill(arrays, 'model'))}")
    return "; ".join(out)


def skill(arrays, name):
    """Brier skill of `name`'s rain forecasts against climatology by hour, per horizon (pooled over the rows given)."""
    y = arrays["event_truth"]
    keep = np.isfinite(y)
    own = np.where(keep, (arrays[f"event_{name}"] - y) ** 2, 0).sum(0)
    base = np.where(keep, (arrays["event_climatology"] - y) ** 2, 0).sum(0)
    return 1 - own / np.where(base > 0, base, np.nan)


def summarise(recipe, data, blocks, results):
    """The pooled and per-fold figures: backtest.json's content."""
    horizon = recipe["model"]["horizon"]
    hs = horizons_within(horizon)
    pooled = {k: np.concatenate([r[k] for r in results]) for k in results[0] if k != "rows"}
    summary = {
        "recipe": recipe.flat(),
        "horizons": hs,
        "folds": [
            {"start": str(data.frame.index[start]), "stop": str(data.frame.index[stop - 1]), "steps": stop - start}
            for start, stop in blocks
        ],
    }
    if "quantity_truth" in pooled:
        names = ["model", *(n for n in (*SIMPLE, "trees") if f"quantity_{n}" in pooled)]
        mae = {n: _mae(pooled, n).tolist() for n in names}
        per_fold = [{n: _mae(r, n).tolist() for n in names} for r in results]
        summary["quantity"] = {
            "target": next(name for name, _, t in data.targets if t is None),
            "mae": mae,
            "mae_per_fold": per_fold,
            **interval(*calibrated(results)),
        }
    if "event_truth" in pooled:
        summary["event"] = {
            "target": next(name for name, _, t in data.targets if t is not None),
            "skill": {n: skill(pooled, n).tolist() for n in ("model", "persistence", "logreg")},
            "skill_per_fold": [{n: skill(r, n).tolist() for n in ("model", "persistence", "logreg")} for r in results],
            "reliability": _reliability(pooled),
        }
    return summary


def interval(low, high, truth):
    """The interval's pooled coverage and mean width per horizon (a backtest has at least two folds)."""
    keep = np.isfinite(truth)
    inside = np.where(keep, (low <= truth) & (truth <= high), 0).sum(0) / keep.sum(0)
    return {"coverage80": inside.tolist(), "width80": np.nanmean(np.where(keep, high - low, np.nan), 0).tolist()}


def calibrated(results):
    """The 80 % intervals of every fold but the first, each widened as `run` widens the served ones
    (scores.interval_margin) by the errors of the fold before it: the same recipe, on the period
    just before, unseen by its model, as the validation period is to an export. (low, high, truth)
    pooled over those folds."""
    out = []
    for before, fold in zip(results, results[1:]):
        low, high = before["quantity_p10"], before["quantity_p90"]
        margin = interval_margin(before["quantity_truth"], low, high, QUANTILES[-1] - QUANTILES[0])
        out.append((fold["quantity_p10"] - margin, fold["quantity_p90"] + margin, fold["quantity_truth"]))
    return tuple(np.concatenate(part) for part in zip(*out))


def _mae(arrays, name):
    return np.nanmean(np.abs(arrays[f"quantity_{name}"] - arrays["quantity_truth"]), 0)


def _reliability(pooled, bins=10):
    """Per horizon: the mean forecast probability and the observed frequency in each of `bins` bins."""
    out = []
    for j in range(pooled["event_truth"].shape[1]):
        y, p = pooled["event_truth"][:, j], pooled["event_model"][:, j]
        keep = np.isfinite(y)
        which = np.minimum((p[keep] * bins).astype(int), bins - 1)
        p, y = p[keep], y[keep]
        filled = [which == b for b in range(bins) if (which == b).any()]
        out.append([[float(p[f].mean()), float(y[f].mean()), int(f.sum())] for f in filled])
    return out


def table(summary):
    """The printed table: per horizon the pooled MAE of the model and each reference, the model's
    ratios to them and the range of its ratio to persistence over folds; the rain's skill; one row per fold."""
    hs, lines = summary["horizons"], []
    if "quantity" in summary:
        q = summary["quantity"]
        names = [n for n in q["mae"] if n != "model"]
        lines.append(
            f"\n{q['target']}: MAE pooled over {len(summary['folds'])} folds (model ÷ reference in brackets); the 80 % "
            "interval's coverage and width over every fold but the first, each calibrated by the fold before"
        )
        rows = []
        for j, h in enumerate(hs):
            model = q["mae"]["model"][j]
            ratios = [f["model"][j] / f["persistence"][j] for f in q["mae_per_fold"]]
            row = {"h": h, "model": f"{model:.2f}"}
            row.update({n: f"{q['mae'][n][j]:.2f} ({model / q['mae'][n][j]:.3f})" for n in names})
            row["÷persistence range"] = f"{min(ratios):.3f}-{max(ratios):.3f}"
            row["coverage80"], row["width80"] = f"{q['coverage80'][j]:.3f}", f"{q['width80'][j]:.2f}"
            rows.append(row)
        lines.append(evaluation.table(rows, list(rows[0])))
    if "event" in summary:
        e = summary["event"]
        lines.append(f"\n{e['target']}: Brier skill pooled over folds against climatology by hour of day")
        rows = [{"h": h, **{n: f"{e['skill'][n][j]:.3f}" for n in e["skill"]}} for j, h in enumerate(hs)]
        lines.append(evaluation.table(rows, list(rows[0])))
    lines.append("\nper fold")
    lines.append(evaluation.table(fold_rows(summary), list(fold_rows(summary)[0])))
    return "\n".join(lines)


def fold_rows(summary):
    """One row per fold: its period, the model's MAE at 6 and 24 steps (where within the horizon)
    beside the best simple reference's, and the rain's skill at the first horizon."""
    hs, rows = summary["horizons"], []
    for k, period in enumerate(summary["folds"]):
        row = {"fold": k + 1, "from": period["start"][:10], "to": period["stop"][:10]}
        if "quantity" in summary:
            mae = summary["quantity"]["mae_per_fold"][k]
            for h in (h for h in (6, 24) if h in hs):
                j = hs.index(h)
                best = min(mae[n][j] for n in SIMPLE if n in mae)
                row[f"model {h}"], row[f"best simple {h}"] = f"{mae['model'][j]:.2f}", f"{best:.2f}"
        if "event" in summary:
            row[f"rain skill {hs[0]}"] = f"{summary['event']['skill_per_fold'][k]['model'][0]:.3f}"
            row[f"logreg {hs[0]}"] = f"{summary['event']['skill_per_fold'][k]['logreg'][0]:.3f}"
        rows.append(row)
    return rows


def plot(summary, results, path):
    """Left: the model's MAE ÷ persistence's per fold, one line per horizon; right: the rain's
    reliability diagram pooled over folds."""
    plt = evaluation._pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    starts = [f["start"][:10] for f in summary["folds"]]
    if "quantity" in summary:
        for j, h in enumerate(summary["horizons"]):
            ratios = [f["model"][j] / f["persistence"][j] for f in summary["quantity"]["mae_per_fold"]]
            axes[0].plot(range(len(starts)), ratios, marker="o", label=f"+{h}")
        axes[0].axhline(1.0, color="grey", lw=0.8)
        axes[0].set_xticks(range(len(starts)), starts, rotation=45, ha="right", fontsize=8)
        axes[0].set_ylabel("model MAE ÷ persistence MAE")
        axes[0].set_title(f"{summary['quantity']['target']}, per fold (block start)")
        axes[0].legend(fontsize=8)
    if "event" in summary:
        for j, h in enumerate(summary["horizons"][:3]):
            points = np.array(summary["event"]["reliability"][j])
            axes[1].plot(points[:, 0], points[:, 1], marker="o", label=f"+{h}")
        axes[1].plot([0, 1], [0, 1], color="grey", lw=0.8)
        axes[1].set_xlabel("forecast probability")
        axes[1].set_ylabel("observed frequency")
        axes[1].set_title(f"{summary['event']['target']}: reliability, pooled over folds")
        axes[1].legend(fontsize=8)
    evaluation._save(fig, path)
