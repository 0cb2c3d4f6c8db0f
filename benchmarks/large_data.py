"""Data larger than memory: peak memory and throughput of `nlpapps run` on a ~2 GB TSV, training
speed on the shipped data against another revision, and peak memory of every default recipe.

    python benchmarks/large_data.py [--gb 2] [--path FILE] [--keep] [--steps 300] [--before main]
                                    [--task classify --task sentiment --task translate]
                                    [--skip-large] [--skip-shipped] [--skip-recipes]

1. Writes a TSV of about --gb gigabytes (domain, score, text) from the shipped sentiment snippets:
   shuffled copies whose texts are perturbed (words dropped and swapped) so that rows differ, with
   three malformed rows in the middle (a wrong field count, bytes that are not UTF-8, an empty
   text). Then trains `classify` (label: the domain) and `sentiment` (the score) on it for --steps
   batches, with a validation and a test split of 0.1 % each, and prints rows/s of the reading
   pass, real (non-padding) tokens/s while training, the wall time and the peak RSS of the run.
   For `--task translate` the file is made the same way from the shipped Bible verse pairs (ref,
   en, fr; both sides perturbed), validation and test are 0.01 % each (the test pairs are
   translated twice, greedy and beam), and the row gives pairs/s trained (batches × batch size /
   seconds of fit, validation included) instead of tokens/s.
   The file is deleted at the end unless --keep (or --path names an existing file).
2. Trains `sentiment` and `classify` on their shipped data for 2 epochs with this tree and with
   --before (a git revision, checked out into a temporary folder) and prints real tokens/s of each
   (tokens of the training split × epochs / seconds of fit, for both).
3. Runs every default recipe (sentiment, classify, translate, forecast) for one epoch and prints its
   peak RSS.
Peak RSS is the child's own (os.wait4), in MiB. Timings depend on the machine's load: run it on an
idle one, or say what else ran.
"""

import argparse
import gzip
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "nlpapps" / "data" / "shipped" / "sentiment_snippets.tsv.gz"
SHIPPED_PAIRS = ROOT / "nlpapps" / "data" / "shipped" / "bible_en_fr.tsv.gz"
LARGE_SETTINGS = ["--set", "train.epochs=1", "--set", "data.split=[0.998, 0.001, 0.001]"]
# The large files: the shipped file each is made from, the columns perturbed, and malformed rows
# (a wrong field count, bytes that are not UTF-8, an empty text) written in the middle.
FILES = {
    "snippets": (SHIPPED, (2,), [b"movie\t1.5\n", b"movie\t2.0\tan \xff\xfe invalid review\n", b"tweet\t1.0\t  \n"]),
    "pairs": (
        SHIPPED_PAIRS,
        (1, 2),
        [b"Gen 1:1\tIn the beginning\n", b"Gen 1:2\tThe \xff\xfe earth\tLa terre\n", b"Gen 1:3\t  \tEt Dieu dit\n"],
    ),
}
# Per task: its file and its settings.
TASKS = {
    "classify": ("snippets", ["--set", "data.label=domain", *LARGE_SETTINGS]),
    "sentiment": ("snippets", LARGE_SETTINGS),
    "translate": ("pairs", ["--set", "train.epochs=1", "--set", "data.split=[0.9998, 0.0001, 0.0001]"]),
}


def perturb(text, rng):
    """Words dropped (1 in 10) and two neighbours swapped, so that copies of a row differ."""
    words = text.split(" ")
    words = [w for w in words if rng.random() > 0.1] or words[:1]
    if len(words) > 2:
        i = rng.randrange(len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words)


def generate(path, gigabytes, kind="snippets", seed=0):
    """Shuffled, perturbed copies of a shipped file (FILES[kind]) until the file holds `gigabytes`."""
    shipped, perturbed, bad = FILES[kind]
    with gzip.open(shipped, "rt", encoding="utf-8") as f:
        header, *rows = [line.rstrip("\n").split("\t") for line in f]
    rng, target, written, copy = random.Random(seed), gigabytes * 1e9, 0, 0
    with open(path, "wb", buffering=1 << 20) as out:
        out.write(("\t".join(header) + "\n").encode())
        while written < target:
            rng.shuffle(rows)
            lines = []
            for row in rows:
                fields = [perturb(v, rng) if i in perturbed else v for i, v in enumerate(row)]
                lines.append("\t".join(fields) + "\n")
            chunk = "".join(lines).encode()
            out.write(chunk)
            written += len(chunk)
            copy += 1
            if bad and written >= target / 2:  # malformed rows in the middle of the file
                out.write(b"".join(bad))
                bad = []
    return copy


def run(args, env=None, cwd=None):
    """Run a command; returns (exit status, its output, wall seconds, its peak RSS in MiB)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        output = log.read().decode(errors="replace")
    return proc.returncode, output, time.perf_counter() - start, usage.ru_maxrss / 1024


def nlpapps(*args):
    return [sys.executable, "-c", "from nlpapps.cli import main; main()", *map(str, args)]


def metadata(output):
    return json.loads(next(Path(output).glob("*/*/metadata.json")).read_text())


def table(rows):
    columns = list(rows[0])
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(str(r[c]).ljust(w) for c, w in zip(columns, widths)))
    print(flush=True)


def large(paths, steps, work, tasks):
    rows = []
    for task in tasks:
        kind, settings = TASKS[task]
        out = work / f"large_{task}"
        status, log, wall, rss = run(
            nlpapps("run", task, "--data", paths[kind], *settings, "--set", f"train.steps_per_epoch={steps}")
            + ["--output", str(out)]
        )
        if status:
            print(log[-3000:])
            raise SystemExit(f"{task} on {paths[kind]} failed ({status})")
        meta = metadata(out)
        read = re.search(r"\((\d+) rows read in ([\d.]+) s, ([\d,]+) rows/s\)", log)
        skipped = re.search(r"skipped (\d+) rows? that do(?:es)? not fit \(([^)]*)\)", log)
        empty = re.search(r"skipped (\d+) (?:empty texts|with a blank side)", log)
        if task == "translate":  # examples are pairs; fit's seconds include the validation pass
            pairs = steps * meta["recipe"]["train.batch_size"]
            trained = {"trained": f"{pairs} pairs", "per s training": f"{pairs / meta['train_seconds']:.0f} pairs"}
        else:
            trained = {
                "trained": f"{meta['train_tokens']} tokens",
                "per s training": f"{meta['train_tokens_per_second']} tokens",
            }
        rows.append(
            {
                "task": task,
                "rows read": read.group(1),
                "read s": read.group(2),
                "rows/s read": read.group(3),
                "steps": steps,
                **trained,
                "bad rows skipped": skipped.group(1) if skipped else 0,
                "empty texts": empty.group(1) if empty else 0,
                "wall s": round(wall),
                "peak RSS MiB": round(rss),
            }
        )
        if skipped:
            print(f"{task}: {skipped.group(0)}")
        shutil.rmtree(out, ignore_errors=True)
    table(rows)


def shipped_speed(before, work):
    """Real tokens/s of fit on the shipped data: this tree against `before`."""
    tree = Path(before)
    if not tree.is_dir():  # a revision of this repository
        tree = work / "before"
        tree.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", before], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    count = (  # real tokens of the training split as the revision's own prepare() makes them
        "import json, sys\n"
        "from nlpapps import recipes\n"
        "from nlpapps.tasks.text import data as text_data\n"
        "prepared = text_data.prepare(recipes.load(sys.argv[1]), lambda *a: None)\n"
        "print(json.dumps(int(prepared[2]['train'].row_lengths().numpy().sum())))\n"
    )
    rows = []
    for task in ("sentiment", "classify"):
        for name, where in ((before, tree), ("this tree", ROOT)):
            env = {**os.environ, "PYTHONPATH": str(where)}
            out = work / f"shipped_{task}_{name.replace(' ', '_')}"
            args = nlpapps("run", task, "--epochs", 2, "--set", "train.patience=9", "--output", out)
            status, log, wall, rss = run(args, env=env, cwd=where)
            if status:
                print(log[-3000:])
                raise SystemExit(f"{task} with {name} failed ({status})")
            meta = metadata(out)
            epochs = len(meta["history"]["loss"])
            if "train_tokens" in meta:
                tokens = meta["train_tokens"]
            else:
                counted = subprocess.run(
                    [sys.executable, "-c", count, task], env=env, cwd=where, capture_output=True, check=True
                )
                tokens = json.loads(counted.stdout.decode().strip().splitlines()[-1]) * epochs
            rows.append(
                {
                    "task": task,
                    "code": name,
                    "epochs": epochs,
                    "tokens": tokens,
                    "fit s": meta["train_seconds"],
                    "tokens/s": round(tokens / meta["train_seconds"]),
                    "peak RSS MiB": round(rss),
                    "test metrics": json.dumps(meta["metrics"]["headline"]),
                }
            )
            shutil.rmtree(out, ignore_errors=True)
    table(rows)


def recipes_memory(work):
    rows = []
    for task in ("sentiment", "classify", "translate", "forecast"):
        out = work / f"recipe_{task}"
        status, log, wall, rss = run(nlpapps("run", task, "--epochs", 1, "--output", out))
        rows.append({"recipe": task, "epochs": 1, "status": status, "wall s": round(wall), "peak RSS MiB": round(rss)})
        if status:
            print(log[-2000:])
        shutil.rmtree(out, ignore_errors=True)
    table(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gb", type=float, default=2.0, help="size of the generated TSV")
    parser.add_argument("--path", type=Path, help="where the reviews TSV is (an existing one is used as it is)")
    parser.add_argument("--pairs-path", type=Path, help="where the verse pairs TSV is (the same)")
    parser.add_argument("--keep", action="store_true", help="keep the generated TSVs")
    parser.add_argument("--steps", type=int, default=300, help="training batches on the large file")
    parser.add_argument(
        "--task",
        action="append",
        choices=list(TASKS),
        help="a task to train on its large file (repeatable; default: classify and sentiment)",
    )
    parser.add_argument(
        "--before",
        default="main",
        help="git revision (or a folder with its tree) to compare the shipped-data speed with",
    )
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--skip-shipped", action="store_true")
    parser.add_argument("--skip-recipes", action="store_true")
    a = parser.parse_args()
    tasks = a.task or ["classify", "sentiment"]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a stopped run still deletes its 2 GB file
    work = Path(tempfile.mkdtemp(prefix="nlpapps_large_"))
    paths = {"snippets": a.path or work / "reviews.tsv", "pairs": a.pairs_path or work / "pairs.tsv"}
    made = []
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the start", flush=True)
    try:
        if not a.skip_large:
            for kind in dict.fromkeys(TASKS[t][0] for t in tasks):
                path = paths[kind]
                if path.exists():
                    continue
                made.append(path)
                print(f"free space where the file goes: {shutil.disk_usage(path.parent).free / 1e9:.0f} GB")
                start = time.perf_counter()
                copies = generate(path, a.gb, kind)
                size = path.stat().st_size
                print(
                    f"wrote {path}: {size / 1e9:.2f} GB, {copies} perturbed copies, {time.perf_counter() - start:.0f} s"
                )
            large(paths, a.steps, work, tasks)
        if not a.skip_shipped:
            shipped_speed(a.before, work)
        if not a.skip_recipes:
            recipes_memory(work)
    finally:
        for path in made if not a.keep else []:
            path.unlink(missing_ok=True)
        for child in work.iterdir():
            if child not in paths.values():
                shutil.rmtree(child, ignore_errors=True)
        if not any(work.iterdir()):
            work.rmdir()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the end")


if __name__ == "__main__":
    main()
