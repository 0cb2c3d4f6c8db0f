"""Training speed of the fit loop, this tree against another checkout (e.g. the commit before a
change), interleaved: `nlpapps run sentiment` on the shipped data with the default recipe, run
alternately from each tree, each run timed epoch by epoch from its own progress lines.

    python benchmarks/training_speed.py --baseline /path/to/other/checkout [--epochs 3] [--rounds 2] \
        [--set model.cell=lstm --set model.bidirectional=false]

Prints each run's test accuracy, first epoch (it also traces the graphs) and later epochs, then per
tree the median later epoch, real (non-padding) tokens trained per second (wall-clock and CPU time:
on a shared machine the CPU figure is the steadier one) and mean test accuracy.
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
    line), the CPU seconds of each, and the export's metadata (real tokens trained on, test metrics)."""
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-c", "from nlpapps.cli import main; main()", "run", "sentiment"]
        command += ["--epochs", str(epochs), "--set", f"train.patience={epochs}", "--output", out]
        command += [arg for setting in settings for arg in ("--set", setting)]
        env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=out)
        seconds, cpu, began = [], [], None
        for line in proc.stdout:
            if EPOCH.match(line):
                began = time.perf_counter(), cpu_seconds(proc.pid)
            elif began is not None and EPOCH_END.match(line):
                seconds.append(time.perf_counter() - began[0])
                cpu.append(cpu_seconds(proc.pid) - began[1])
                began = None
        exports = sorted(Path(out).glob("*/*/metadata.json"))
        if proc.wait() != 0 or len(seconds) != epochs or not exports:
            raise SystemExit(f"the run from {tree} failed")
        return seconds, cpu, json.loads(exports[-1].read_text())


def cpu_seconds(pid):
    """CPU time (user + system, all threads) a running process has used so far: on a shared machine
    this moves far less with the other load than wall-clock time does."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="another checkout of nlpapps (its root folder)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], help="a recipe setting for both trees, KEY=VALUE")
    args = parser.parse_args()
    trees = {"baseline": Path(args.baseline).resolve(), "this tree": HERE}
    later, later_cpu, accuracy, tokens = {n: [] for n in trees}, {n: [] for n in trees}, {n: [] for n in trees}, 0
    recipe = "default recipe" + "".join(f", {setting}" for setting in args.set)
    print(f"sentiment, {recipe}, {args.epochs} epochs a run")
    print(f"{'round':>5}  {'tree':<9}  {'test accuracy':>13}  {'first epoch s':>13}  later epochs s (CPU s)")
    for r in range(args.rounds):
        order = list(trees) if r % 2 == 0 else list(reversed(trees))  # neither always runs first
        for name in order:
            seconds, cpu, metadata = one_run(trees[name], args.epochs, args.set)
            tokens = metadata["train_tokens"] // args.epochs  # every epoch trains on the same texts
            later[name] += seconds[1:]
            later_cpu[name] += cpu[1:]
            accuracy[name].append(metadata["metrics"]["headline"]["polarity_accuracy"])
            print(
                f"{r + 1:>5}  {name:<9}  {accuracy[name][-1]:>13.4f}  {seconds[0]:>13.1f}  "
                + " ".join(f"{s:.1f} ({c:.1f})" for s, c in zip(seconds[1:], cpu[1:])),
                flush=True,
            )
    print(f"\n{tokens} real tokens an epoch; medians of the later epochs")
    print(
        f"{'tree':<9}  {'epoch s':>8}  {'real tokens/s':>13}  {'CPU s':>6}  {'tokens/CPU s':>12}  {'test accuracy':>13}"
    )
    for name in trees:
        wall, cpu = statistics.median(later[name]), statistics.median(later_cpu[name])
        print(
            f"{name:<9}  {wall:>8.2f}  {tokens / wall:>13.0f}  {cpu:>6.1f}  {tokens / cpu:>12.0f}  "
            f"{statistics.mean(accuracy[name]):>13.4f}"
        )
    speed_up = statistics.median(later["baseline"]) / statistics.median(later["this tree"])
    cpu_speed_up = statistics.median(later_cpu["baseline"]) / statistics.median(later_cpu["this tree"])
    print(f"\nspeed-up of this tree over the baseline: {speed_up:.3f}x wall-clock, {cpu_speed_up:.3f}x CPU time")


if __name__ == "__main__":
    main()
