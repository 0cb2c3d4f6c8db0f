"""Training speed of the fit loop, this tree against another checkout (e.g. the commit before a
change), interleaved: `nlpapps run sentiment` on the shipped data with the default recipe, run
alternately from each tree, each run timed epoch by epoch from its own progress lines.

    python benchmarks/training_speed.py --baseline /path/to/other/checkout [--epochs 3] [--rounds 2] \
        [--set model.cell=lstm --set model.bidirectional=false]

Prints each run's test accuracy, first epoch (it also traces the graphs) and later epochs, then per
tree the median later epoch, real (non-padding) tokens trained per second and mean test accuracy.
"""

import argparse
import json
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


def one_run(tree, epochs, settings=()):
    """One run from `tree`: the seconds of each epoch (from its "Epoch k/N" line to its end-of-epoch
    line) and the export's metadata (real tokens trained on, test metrics)."""
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
        exports = sorted(Path(out).glob("*/*/metadata.json"))
        if proc.wait() != 0 or len(seconds) != epochs or not exports:
            raise SystemExit(f"the run from {tree} failed")
        return seconds, json.loads(exports[-1].read_text())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="another checkout of nlpapps (its root folder)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], help="a recipe setting for both trees, KEY=VALUE")
    args = parser.parse_args()
    trees = {"baseline": Path(args.baseline).resolve(), "this tree": HERE}
    later, accuracy, tokens = {name: [] for name in trees}, {name: [] for name in trees}, None
    recipe = "default recipe" + "".join(f", {setting}" for setting in args.set)
    print(f"sentiment, {recipe}, {args.epochs} epochs a run")
    print(f"{'round':>5}  {'tree':<9}  {'test accuracy':>13}  {'first epoch s':>13}  later epochs s")
    for r in range(args.rounds):
        order = list(trees) if r % 2 == 0 else list(reversed(trees))  # neither always runs first
        for name in order:
            seconds, metadata = one_run(trees[name], args.epochs, args.set)
            tokens = metadata["train_tokens"] // args.epochs  # every epoch trains on the same texts
            later[name] += seconds[1:]
            accuracy[name].append(metadata["metrics"]["headline"]["polarity_accuracy"])
            print(
                f"{r + 1:>5}  {name:<9}  {accuracy[name][-1]:>13.4f}  {seconds[0]:>13.1f}  "
                + " ".join(f"{s:.1f}" for s in seconds[1:]),
                flush=True,
            )
    print(f"\n{tokens} real tokens an epoch")
    print(f"{'tree':<9}  {'median later epoch s':>20}  {'real tokens/s':>13}  {'mean test accuracy':>18}")
    for name, seconds in later.items():
        median = statistics.median(seconds)
        print(f"{name:<9}  {median:>20.2f}  {tokens / median:>13.0f}  {statistics.mean(accuracy[name]):>18.4f}")
    ratio = statistics.median(later["baseline"]) / statistics.median(later["this tree"])
    print(f"\nspeed-up of this tree over the baseline (median later epoch): {ratio:.3f}x")


if __name__ == "__main__":
    main()
