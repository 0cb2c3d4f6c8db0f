"""`nlpapps run forecast`: the series, the model trained with early stopping on the validation
period, refitted on training + validation, scored on the test period against its baselines, and
exported with its streaming signatures."""

import numpy as np
import tensorflow as tf

from nlpapps import evaluation, export, training
from nlpapps.data import series
from nlpapps.tasks.forecast import data as forecast_data
from nlpapps.tasks.forecast import model as forecast_model
from nlpapps.tasks.forecast import scores, serving
from nlpapps.tasks.forecast.model import QUANTILES


def run(recipe, output_root, log=print):
    d, horizon = recipe["data"], recipe["model"]["horizon"]
    forecast_data.check(recipe)
    data = forecast_data.prepare(recipe, log)
    a, b, n = data.bounds
    encoder, encoded = forecast_data.encoders(d, data, a)
    scale = forecast_data.change_scale(data, d["features"], a)
    validation = forecast_model.validation_windows(recipe, data, d["features"], scale, a, b)
    parts = forecast_data.other_stations(recipe, data, log)
    log(describe(recipe, data, encoder))
    workdir = training.run_dir(output_root, recipe)
    model, history, seconds = forecast_model.fit(recipe, data, encoder, scale, a, parts, validation, workdir)
    start = tf.constant(np.nanmean(data.readings[:a], 0), "float32")  # the reading assumed before the first
    endpoints, state_names = serving.streaming_functions(model, d, data.targets, scale, start)
    predicted, quantiles = serving.series_forecasts(endpoints, data)
    season, season_name = forecast_data.season_of(data.interval, n)
    # The validation period's scores: the ones to choose a recipe by (the test period's are for reporting).
    validation_rows = scores.evaluate(data, predicted, quantiles, encoded, season, horizon, d["event_window"], (a, b))
    margin = calibration(data, quantiles, horizon)
    refit = {}
    if recipe["train"]["refit"]:
        model, refit = refit_model(recipe, data, encoder, scale, history, validation, workdir, log)
    endpoints, state_names = serving.streaming_functions(model, d, data.targets, scale, start, margin)
    predicted, quantiles = serving.series_forecasts(endpoints, data)
    quantity_rows, event_rows, curves, persistence = scores.evaluate(
        data, predicted, quantiles, encoded, season, horizon, d["event_window"]
    )
    report(data, validation_rows[:2], quantity_rows, event_rows, season, season_name, seconds, refit, log)
    lead = min(6, horizon)
    metadata = describe_export(recipe, data, state_names, quantity_rows, event_rows, validation_rows[:2], margin)
    metadata.update(
        baselines={"seasonal": f"{season_name} ({season} steps)"},
        history=history,
        train_seconds=round(seconds, 1),
        refit=refit,
    )
    where = f"{d['source']}, {d['station']}" if d["station_column"] else d["source"]
    extras = [
        ("training_curves.png", lambda p: evaluation.plot_history(history, p)),
        ("forecast.png", lambda p: scores.plot_week(data, predicted, persistence, lead, p, where)),
    ]
    if curves:
        extras.append(("reliability.png", lambda p: evaluation.plot_reliability(curves, p)))
    return export.save(
        output_root, recipe, endpoints=endpoints, track=[model], keras_model=model, metadata=metadata, extras=extras
    )


def calibration(data, quantiles, horizon):
    """The quantiles' widening [horizon, Kq], from the validated model's forecasts issued in the
    validation period (those whose truth is in it): on the training period the quantiles are too
    sure of themselves, on unseen data they cover less than they say. None without quantities."""
    if quantiles is None:
        return None
    a, b, _ = data.bounds
    issued = slice(a, max(a + 1, b - horizon))
    truth = np.where(data.future_seen, data.future, np.nan)[issued][..., data.quantity]
    level = QUANTILES[-1] - QUANTILES[0]
    return scores.interval_margin(truth, quantiles[issued, ..., 0], quantiles[issued, ..., -1], level)


def refit_model(recipe, data, encoder, scale, history, validation, workdir, log):
    """Rolling origin, as an operational forecaster works: every reading before the test period
    trains the model that forecasts it, for the number of epochs that validation chose. The
    normalisation stays the training period's: the recipe was chosen with it."""
    epochs = int(np.argmin(history["val_loss"])) + 1
    log(f"refit: trained again from the same initial weights on training + validation, epochs: {epochs}")
    training.seed_everything(recipe["train"]["seed"])
    b = data.bounds[1]
    parts = forecast_data.other_stations(recipe, data, log, until=b)
    # Its validation loss means nothing (the period is trained on): one batch, as the loop needs some.
    model, refit_history, refit_seconds = forecast_model.fit(
        recipe, data, encoder, scale, b, parts, validation.take(1), workdir / "refit", epochs
    )
    return model, {"epochs": epochs, "history": refit_history, "train_seconds": round(refit_seconds, 1)}


def describe(recipe, data, encoder):
    """The line saying what the model reads and how it trains."""
    d, t = recipe["data"], recipe["train"]
    periods = forecast_data.time_periods(d, data.interval)
    departed = forecast_data.departed(d)
    return (
        f"targets: {', '.join(name for name, _, _ in data.targets)}; {len(d['features'])} features → "
        f"{encoder.width} encoded (time of {' and of '.join(periods) or 'nothing'}"
        + (f"; {', '.join(departed)} as departures from their trailing mean" if departed else "")
        + f"); sequences of {min(t['window'], data.bounds[0] - recipe['model']['horizon'])} steps every "
        f"{t['stride']}, horizon {recipe['model']['horizon']}"
    )


def report(data, validation_rows, quantity_rows, event_rows, season, season_name, seconds, refit, log):
    """The validation and test tables against the baselines."""
    a, b, n = data.bounds
    index = data.frame.index
    log(
        f"\nvalidation period: {index[a]} to {index[b - 1]} ({b - a} steps), the one "
        f"to compare recipes by (MAE in the data's units, Brier skill)"
    )
    shown = ("_mae", "_bias", "_skill", "_coverage80")
    for rows in validation_rows:
        if rows:
            log(evaluation.table(rows, [c for c in rows[0] if c in ("target", "h") or c.endswith(shown)]))
    log(
        f"\ntest period: {index[b]} to {index[-1]} ({n - b} steps of {series.describe(data.interval)}); "
        f"training took {seconds + refit.get('train_seconds', 0):.0f} s"
        + (f" ({seconds:.0f} s the validated fit, {refit['train_seconds']:.0f} s the refit)" if refit else "")
    )
    if quantity_rows:
        log(
            f"quantities, in the data's units (persistence: the last value; seasonal: {season_name}, {season} "
            f"steps; coverage80, width80: the share of the truth between the model's 10 % and 90 % quantiles, "
            f"calibrated on the validation period, and their mean distance)"
        )
        log(evaluation.table(quantity_rows, list(quantity_rows[0])))
    if event_rows:
        log(
            "events (skill: Brier skill against climatology, the training frequency; persistence: "
            "P(event at t+h | event now or not) from training; logreg: logistic regression on the current reading)"
        )
        log(evaluation.table(event_rows, list(event_rows[0])))


def describe_export(recipe, data, state_names, quantity_rows, event_rows, validation_rows, margin):
    """metadata.json's account of the export: its inputs, outputs, state, data and scores."""
    d, horizon = recipe["data"], recipe["model"]["horizon"]
    a, b, n = data.bounds
    units = dict(u.split("=", 1) for u in d["units"] if "=" in u)
    lead = min(6, horizon)
    headline = {f"{r['target']}_mae_h{r['h']}": r["model_mae"] for r in quantity_rows if r["h"] in (lead, horizon)}
    headline.update({f"{r['target']}_skill_h{r['h']}": r["model_skill"] for r in event_rows if r["h"] == 1})
    quantities = [name for name, _, threshold in data.targets if threshold is None]
    return {
        "features": [{"name": f, "unit": units.get(f, ""), "angle": f in d["angles"]} for f in d["features"]],
        "targets": [
            {
                "name": name,
                "column": column,
                "kind": "quantity" if threshold is None else "event",
                "threshold": threshold,
                "unit": units.get(column, "") if threshold is None else "probability",
            }
            for name, column, threshold in data.targets
        ],
        "interval": series.describe(data.interval),
        "interval_seconds": data.interval.total_seconds(),
        "horizon": horizon,
        "time_input": "unix seconds (UTC), float64, one per reading",
        "missing_readings": "NaN (or any non-finite value) in a reading is replaced by that feature's last "
        "finite value; before any, by its training mean",
        "anomalies": {
            "features": forecast_data.departed(d),
            "reading": "each of features is read as its departure from its trailing mean, an exponential average "
            f"with weight 1/{d['anomaly_steps']} on each new reading, started by the first reading (state "
            "trailing_mean)",
        },
        "quantiles": {
            "outputs": {f"forecast_{name}": q for name, q in zip(serving.QUANTILE_OUTPUTS, QUANTILES)}
            if quantities
            else {},
            "targets": quantities,
            "shape": "[batch, horizon, quantity targets] beside forecast; forecasts_pNN after every reading",
            "calibration": "each side widened by margin[horizon step][quantity target] (in its unit; negative "
            "narrows), conformalized on the validation period so that they hold about "
            f"{QUANTILES[-1] - QUANTILES[0]:.0%} of the truth",
            "margin": [] if margin is None else np.round(margin, 4).tolist(),
        },
        "state": state_names,
        "station": d["station"] if d["station_column"] else "",
        "data": {
            "source": d["source"],
            "steps": {"train": a, "validation": b - a, "test": n - b},
            "test_period": [str(data.frame.index[b]), str(data.frame.index[-1])],
            "columns": {"time": d["time_column"], "date": d["date_column"], "station": d["station_column"]},
        },
        "metrics": {
            "headline": headline,
            "quantities": quantity_rows,
            "events": event_rows,
            "validation": dict(zip(("quantities", "events"), validation_rows)),
        },
        "recipe": recipe.flat(),
    }
