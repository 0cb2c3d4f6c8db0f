"""Forecast recipes compared over rolling origins: each fold trains on every step before its origin
and is scored on the validation-length period after it, the last fold being the recipe's own
validation period; the test period is never trained on nor scored.

    python benchmarks/forecast_folds.py [--folds 4] [--seeds 13,14] [--set KEY=VALUE ...]
        [--candidate "KEY=VALUE KEY=VALUE" ...]

One validated fit (no refit) per fold, seed and recipe: the forecast's default recipe with the --set
overrides (the baseline), then each candidate on top of it. Prints each run's validation MAE of the
first quantity per horizon and skill of the first event, its relative MAE T (the mean over the
horizons of its MAE ÷ the baseline's in the same fold and seed) and its mean skill R at 1/3/6 steps,
then each recipe's means over folds and seeds. On the shipped year the folds' periods run from spring
to autumn, so a recipe tied to the level of the months it trained on shows it.
"""

import argparse
import json
import tempfile

import keras
import numpy as np

from nlpapps import evaluation, recipes, training
from nlpapps.tasks import forecast

HORIZONS = (1, 3, 6, 12, 24)


def fold_scores(overrides, origin, length, total, seed):
    """Validation MAE and skill by horizon of the recipe's validated fit trained on the steps before
    `origin` and scored on the `length` after it."""
    split = f"data.split=[{origin}, {length}, {total - origin - length}]"
    recipe = recipes.load("forecast", [*overrides, split, "train.refit=false", f"train.seed={seed}"])
    keras.backend.clear_session()
    training.seed_everything(seed)
    with tempfile.TemporaryDirectory() as folder:
        path = forecast.run(recipe, folder, log=lambda line: None)
        rows = json.loads((path / "metadata.json").read_text())["metrics"]["validation"]
    mae = {r["h"]: r["model_mae"] for r in rows["quantities"] if r["target"] == rows["quantities"][0]["target"]}
    skill = {r["h"]: r["model_skill"] for r in rows["events"] if r["target"] == rows["events"][0]["target"]}
    return mae, skill


def fold_origins(data, folds):
    """The folds' first steps, one validation length apart and the last the validation period's, and
    that length."""
    a, b, _ = data["bounds"]
    length = b - a
    origins = [a - k * length for k in reversed(range(folds))]
    if origins[0] < length:
        raise SystemExit(f"{folds} folds of {length} steps leave the first less than one fold to train on")
    return origins, length


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=4, help="origins, one validation length apart")
    parser.add_argument("--seeds", default="13,14", help="comma-separated train.seed values")
    parser.add_argument("--set", action="append", default=[], help="an override of the baseline (repeatable)")
    parser.add_argument(
        "--candidate", action="append", default=[], help='overrides of one candidate, space-separated: "K=V K=V"'
    )
    args = parser.parse_args()
    base = recipes.load("forecast", args.set)
    data = forecast.prepare(base, log=lambda line: None)
    n = data["bounds"][2]
    origins, length = fold_origins(data, args.folds)
    recipes_tried = {"baseline": args.set, **{c: [*args.set, *c.split()] for c in args.candidate}}
    rows = []
    for origin in origins:
        period = f"{data['frame'].index[origin]:%Y-%m-%d} to {data['frame'].index[origin + length - 1]:%Y-%m-%d}"
        for seed in (int(s) for s in args.seeds.split(",")):
            reference = None
            for name, overrides in recipes_tried.items():
                mae, skill = fold_scores(overrides, origin, length, n, seed)
                reference = reference or mae
                row = {"recipe": name, "period": period, "seed": seed}
                row.update({f"mae_{h}": mae[h] for h in HORIZONS if h in mae})
                row.update({f"skill_{h}": skill[h] for h in (1, 3, 6) if h in skill})
                row["T"] = float(np.mean([mae[h] / reference[h] for h in mae]))
                row["R"] = float(np.mean([skill[h] for h in (1, 3, 6) if h in skill])) if skill else None
                rows.append(row)
                print(evaluation.table([row], list(row)).splitlines()[-1], flush=True)
    print(evaluation.table(rows, list(rows[0])))
    summary = [
        {
            "recipe": name,
            "runs": len(mine),
            "T": float(np.mean([r["T"] for r in mine])),
            "R": float(np.mean([r["R"] for r in mine])) if mine[0]["R"] is not None else None,
        }
        for name in recipes_tried
        for mine in [[r for r in rows if r["recipe"] == name]]
    ]
    print(evaluation.table(summary, list(summary[0])))


if __name__ == "__main__":
    main()
