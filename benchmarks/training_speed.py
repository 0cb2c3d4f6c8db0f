"""Training speed of the fit loop, this tree against another checkout (e.g. the commit before a
change), interleaved: `nlpapps run sentiment` on the shipped data with the default recipe, run
alternately from each tree, each run timed epoch by epoch from its own progress lines.

    python benchmarks/training_speed.py --baseline /path/to/other/checkout [--epochs 3] [--rounds 2] \
        [--set model.cell=lstm --set model.bidirectional=false]

Prints each run's first epoch (it also traces the graphs) and its later epochs, then per tree the
median later epoch and real (non-padding) tokens trained per second.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
EPOCH = re.compile(rb"^Epoch (\d+)/\d+")
EPOCH_END = re.compile(rb"^\d+/\d+ - ")


def epoch_seconds(tree, epochs, settings=()):
    """Seconds of each epoch of one run from `tree`: from its "Epoch k/N" line to its end-of-epoch line."""
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-c", "from nlpapps.cli import main; main()", "run", "sentiment"]
        command += ["--epochs", str(epochs), "--set", f"train.patience={epochs}", "--output", out]
        command += [arg for setting in settings for arg in ("--set", setting)]
        env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=out)
        seconds, began = [], None
        for line in proc.stdout:
            if EPOCH.match(line):
                began = time.perf_counter()
            elif began is not None and EPOCH_END.match(line):
                seconds.append(time.perf_counter() - began)
                began = None
        if proc.wait() != 0 or len(seconds) != epochs:
            raise SystemExit(f"the run from {tree} failed")
    return seconds


def real_tokens():
    sys.path.insert(0, str(HERE))
    from nlpapps import recipes
    from nlpapps.tasks import many_to_one

    _, _, ids, _ = many_to_one.prepare(recipes.load("sentiment"), lambda *_: None)
    return int(ids["train"].row_lengths().numpy().sum())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="another checkout of nlpapps (its root folder)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], help="a recipe setting for both trees, KEY=VALUE")
    args = parser.parse_args()
    trees = {"baseline": Path(args.baseline).resolve(), "this tree": HERE}
    tokens = real_tokens()
    later = {name: [] for name in trees}
    recipe = "default recipe" + "".join(f", {setting}" for setting in args.set)
    print(f"sentiment, {recipe}, {args.epochs} epochs a run, {tokens} real tokens an epoch")
    print(f"{'round':>5}  {'tree':<9}  {'first epoch s':>13}  later epochs s")
    for r in range(args.rounds):
        order = list(trees) if r % 2 == 0 else list(reversed(trees))  # neither always runs first
        for name in order:
            seconds = epoch_seconds(trees[name], args.epochs, args.set)
            later[name] += seconds[1:]
            print(
                f"{r + 1:>5}  {name:<9}  {seconds[0]:>13.1f}  {' '.join(f'{s:.1f}' for s in seconds[1:])}", flush=True
            )
    print(f"\n{'tree':<9}  {'median later epoch s':>20}  {'real tokens/s':>13}")
    for name, seconds in later.items():
        median = statistics.median(seconds)
        print(f"{name:<9}  {median:>20.2f}  {tokens / median:>13.0f}")
    ratio = statistics.median(later["this tree"]) / statistics.median(later["baseline"])
    print(f"\nthis tree's epoch time / baseline's: {ratio:.3f}")


if __name__ == "__main__":
    main()
