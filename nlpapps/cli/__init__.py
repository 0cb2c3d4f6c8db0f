"""The `nlpapps` command line: parses, calls a task, prints. Heavy imports wait until needed so
that mistakes are reported at once."""

import json
import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import click

from nlpapps import __version__, recipes
from nlpapps.errors import UserError

# Shorthand flags of `run`: each sets one recipe key.
SHORTHANDS = {
    "epochs": "train.epochs",
    "batch_size": "train.batch_size",
    "cell": "model.cell",
    "units": "model.units",
    "layers": "model.depth",
    "bidirectional": "model.bidirectional",
    "data": "data.source",
    "text_column": "data.text",
    "label_column": "data.label",
    "strategy": "train.strategy",
}


def import_tensorflow():
    """Import TensorFlow with its native start-up log lines (printed before any log level applies)
    held back, so that the CLI's own output and one-line errors stay readable; shown if it fails."""
    if "tensorflow" in sys.modules:
        return
    with native_logs_held():
        import tensorflow  # noqa: F401


@contextmanager
def native_logs_held():
    """Hold back what native code writes to stderr meanwhile; shown if anything but a user error
    (which says what went wrong in one line) ends the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except UserError:
            raise
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


TSV_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


class App(click.Group):
    """Every user mistake ends as one line on stderr and exit code 2, never a traceback."""

    def main(self, args=None, prog_name=None, standalone_mode=True, **extra):
        try:
            code = super().main(args, prog_name or "nlpapps", standalone_mode=False, **extra)
        except (click.ClickException, UserError) as e:
            message = e.format_message() if isinstance(e, click.ClickException) else str(e)
            click.echo(f"nlpapps: error: {message}", err=True)
            if getattr(e, "exit_now", False):  # TensorFlow still waits in a thread that would hold the exit
                sys.stdout.flush()
                os._exit(2)
            sys.exit(2)
        except click.Abort:
            click.echo("nlpapps: interrupted", err=True)
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=App, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nlpapps")
def cli():
    """Recurrent-network applications: train, evaluate and export sequence models from the shell."""


@cli.command()
@click.argument("recipe")
@click.option("--epochs", type=click.IntRange(min=1), help="Training epochs (train.epochs).")
@click.option("--batch-size", type=click.IntRange(min=1), help="Batch size (train.batch_size).")
@click.option("--cell", help="rnn, lstm, gru or peephole (model.cell).")
@click.option("--units", type=click.IntRange(min=1), help="Units per recurrent layer (model.units).")
@click.option("--layers", type=click.IntRange(min=1), help="Stacked recurrent layers (model.depth).")
@click.option("--bidirectional/--no-bidirectional", default=None, help="Read both ways (model.bidirectional).")
@click.option("--data", help="shipped:NAME, tfds:NAME, a .csv/.tsv/.jsonl file or a class-per-folder directory.")
@click.option("--text-column", help="Column holding the text (data.text).")
@click.option("--label-column", help="Column holding the label or score (data.label).")
@click.option(
    "--strategy",
    type=click.Choice(["default", "mirrored", "multi-worker"]),
    help="Train on one device, on all local GPUs in sync, or on the machines TF_CONFIG names (train.strategy).",
)
@click.option(
    "--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Set any recipe key, e.g. model.units=128."
)
@click.option(
    "--output",
    default="saved_models",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where exports (and training runs) go.",
)
def run(recipe, overrides, output, **flags):
    """Train, evaluate and export a task: a recipe name (sentiment, classify, spam, ...) or a .toml file."""
    given = [f"{SHORTHANDS[k]}={json.dumps(v, ensure_ascii=False)}" for k, v in flags.items() if v is not None]
    settings = recipes.load(recipe, [*given, *overrides])
    _require_writable(output)
    import_tensorflow()
    from nlpapps import tasks, training

    with native_logs_held():  # first: devices and the cluster are fixed when TensorFlow starts
        training.strategy(settings)
    training.seed_everything(settings["train"]["seed"])
    path = tasks.get(settings.task).run(settings, output, log=click.echo)
    if path is None:
        click.echo(f"\n{training.worker_label()}: done; the chief writes the export")
    else:
        click.echo(f"\nexported {settings.task} model to {path}")


def _require_writable(folder):
    """Refuse an --output that cannot take an export before any work starts, creating nothing."""
    path = Path(folder).absolute()
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is None or not existing.is_dir():
        raise UserError(f"--output {folder}: {existing} is not a folder")
    try:  # a real write, not os.access: read-only file systems and /proc refuse even root
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as e:
        raise UserError(f"--output {folder}: cannot write in {existing} ({e.strerror})") from None


def _read_texts(texts):
    """Arguments, or stdin lines for '-', as raw bytes: the model decides what invalid UTF-8 means."""
    if list(texts) == ["-"]:
        return [line.rstrip(b"\r\n") for line in sys.stdin.buffer]
    return [t.encode("utf-8", "surrogateescape") for t in texts]


def resolve_model(name, model_path, models, tasks_served):
    """The export to use and its metadata: --model PATH, else the newest version of the model NAME
    (a recipe's name: sentiment, spam, ...). Refuses an export of a task this command does not serve,
    and one of another task than NAME when NAME is a task."""
    from nlpapps import export, tasks

    path = Path(model_path) if model_path else export.latest(models, name)
    meta = export.metadata(path)
    task = meta.get("task")
    if task not in tasks_served or (name in tasks.TASKS and task != name):
        wanted = name if name in tasks.TASKS else " or ".join(tasks_served)
        raise UserError(f"{path} is a {task} model, not a {wanted} model")
    return path, meta


@cli.command()
@click.argument("name", metavar="MODEL")
@click.argument("texts", nargs=-1, required=True)
@click.option(
    "--model", "model_path", type=click.Path(), help="An export folder; default: the newest version of MODEL."
)
@click.option("--models", default="saved_models", show_default=True, help="Where exports are looked for.")
@click.option("--top-k", type=click.IntRange(min=1), help="Show the K most likely labels (classify).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line instead of TSV.")
def predict(name, texts, model_path, models, top_k, as_json):
    """Run an exported text model on TEXTS (or '-' to read one text per line from stdin).
    MODEL is a task (sentiment, classify) or another recipe's name (spam)."""
    from nlpapps import tasks

    path, meta = resolve_model(name, model_path, models, tasks.TEXT_IN)
    if top_k and meta["task"] not in tasks.TOP_K:
        raise UserError(f"--top-k is for {', '.join(tasks.TOP_K)} models; {path} is a {meta['task']} model")
    raw = _read_texts(texts)
    import_tensorflow()
    task = tasks.get(meta["task"])
    import tensorflow as tf

    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    outputs = {k: v.numpy() for k, v in serve(text=tf.constant(raw, dtype=tf.string)).items()}
    for text, row in zip(raw, task.rows(outputs, top_k)):
        text = text.decode("utf-8", "replace")
        if as_json:
            click.echo(json.dumps({"text": text, **row}, ensure_ascii=False))
        else:  # one line per text, whatever the text holds
            cells = [text, *(str(v) for v in row.values())]
            click.echo("\t".join(c.translate(TSV_ESCAPES) for c in cells))


@cli.command("forecast")
@click.argument("name", metavar="[MODEL]", default="forecast")
@click.option("--input", "input_path", type=click.Path(), help="A CSV of readings: the forecast after its last row.")
@click.option("--stream", is_flag=True, help="Read CSV rows from stdin (header first); one forecast line per row.")
@click.option("--model", "model_path", type=click.Path(), help="An export folder; default: the newest version.")
@click.option("--models", default="saved_models", show_default=True, help="Where exports are looked for.")
def forecast_(name, input_path, stream, model_path, models):
    """Forecast with an exported forecast model: after the last reading of --input FILE, or after
    every row arriving on stdin with --stream. Prints CSV: time, then each target at +1 … +horizon."""
    if bool(input_path) == stream:
        raise UserError("give exactly one of --input FILE or --stream")
    path, meta = resolve_model(name, model_path, models, ("forecast",))
    import_tensorflow()
    import tensorflow as tf

    from nlpapps.cli import forecast_io as forecast

    if input_path:
        times, readings, seconds = forecast.read_input(input_path, meta)
        served = tf.saved_model.load(str(path)).signatures["forecast"]
        out = served(readings=tf.constant(readings[None]), time=tf.constant(seconds[None]))["forecast"]
        click.echo(forecast.header(meta))
        click.echo(forecast.line(times[-1].isoformat(), out[0].numpy()))
        return
    loaded = tf.saved_model.load(str(path))
    lines = (raw.decode("utf-8", "replace") for raw in sys.stdin.buffer)
    forecast.stream(
        lines,
        loaded.signatures,
        meta,
        emit=lambda text: print(text, flush=True),
        warn=lambda text: print(f"nlpapps: warning: {text}", file=sys.stderr, flush=True),
    )


@cli.command()
@click.argument("texts", nargs=-1, required=True)
@click.option(
    "--beam",
    type=click.IntRange(min=1),
    help="Beam width; 1 is greedy. Default: the width the model was exported with (decode.beam_width).",
)
@click.option("--name", default="translate", show_default=True, help="The model: a translate recipe's name.")
@click.option(
    "--model", "model_path", type=click.Path(), help="An export folder; default: the newest version of --name."
)
@click.option("--models", default="saved_models", show_default=True, help="Where exports are looked for.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line: text, translation, score.")
@click.option(
    "--show-attention",
    "attention_png",
    type=click.Path(dir_okay=False),
    help="Also draw each translation's attention weights to this PNG (PNG-2.png, ... for more texts); "
    "uses the model's own beam width.",
)
def translate(texts, beam, name, model_path, models, as_json, attention_png):
    """Translate TEXTS (or '-' to read one text per line from stdin, one line out for each)."""
    path, _ = resolve_model(name, model_path, models, ("translate",))
    raw = _read_texts(texts)
    import_tensorflow()
    import tensorflow as tf

    from nlpapps.tasks import translate as task

    translated = task.chooser(tf.saved_model.load(str(path)), beam, bool(attention_png))
    for start in range(0, len(raw), 64):
        outputs = translated(tf.constant(raw[start : start + 64], dtype=tf.string))
        for i, (text, translation, score) in enumerate(
            zip(raw[start : start + 64], outputs["translation"], outputs["score"])
        ):
            translation = translation.decode("utf-8", "replace")
            if as_json:
                click.echo(
                    json.dumps(
                        {
                            "text": text.decode("utf-8", "replace"),
                            "translation": translation,
                            "score": round(float(score), 4),
                        },
                        ensure_ascii=False,
                    )
                )
            else:
                click.echo(translation.translate(TSV_ESCAPES))
            if attention_png:
                png = Path(attention_png)
                n = start + i + 1
                target = png if n == 1 else png.with_name(f"{png.stem}-{n}{png.suffix or '.png'}")
                task.show_attention(outputs, i, target)


@cli.command("list")
@click.option("--models", default="saved_models", show_default=True, help="Where exports are looked for.")
def list_(models):
    """Tasks, recipes and saved models with their versions and headline metrics."""
    from nlpapps import tasks

    click.echo("tasks: " + ", ".join(tasks.TASKS))
    click.echo("recipes:")
    for name, path in recipes.available().items():
        click.echo(f"  {name:<12} {path}")
    click.echo(f"saved models in {models}:")
    found = sorted(
        (p for p in Path(models).glob("*/*/metadata.json") if p.parent.name.isdigit()),
        key=lambda p: (p.parts[-3], int(p.parts[-2])),
    )
    for meta_path in found:
        meta = json.loads(meta_path.read_text())
        headline = ", ".join(
            f"{k} {v:.3f}"
            for k, v in meta.get("metrics", {}).get("headline", {}).items()
            if isinstance(v, (int, float))
        )
        click.echo(f"  {meta_path.parent}  {meta.get('task', '?')}  {meta.get('created', '')}  {headline}")
    if not found:
        click.echo("  (none yet: `nlpapps run sentiment` makes one)")


def main():
    cli()
