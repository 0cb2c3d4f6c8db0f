"""The `nlpapps` command line: parses, calls a task, prints. Heavy imports wait until needed so
that mistakes are reported at once."""

import json
import os
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

import click

from nlpapps import __version__, recipes
from nlpapps.errors import UserError, printable

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
            click.echo(f"nlpapps: error: {printable(message)}", err=True)
            if getattr(e, "exit_now", False):  # TensorFlow still waits in a thread that would hold the exit
                sys.stdout.flush()
                os._exit(2)
            sys.exit(2)
        except click.Abort:
            click.echo("nlpapps: interrupted", err=True)
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


MODEL_HELP = (
    "The model: its name, the recipe it was trained with ({examples}), for the newest version under "
    "--models; or a folder: one export (NAME/VERSION) or a model's versions (NAME)."
)


def model_option(default, examples):
    return click.option(
        "--model", "-m", "model", default=default, metavar="NAME|PATH", help=MODEL_HELP.format(examples=examples)
    )


def models_option(help="The folder of exports: NAME/VERSION/ for each model."):
    return click.option(
        "--models",
        default="saved_models",
        show_default=True,
        metavar="DIR",
        type=click.Path(file_okay=False),
        help=help,
    )


def deprecated(old, new):
    click.echo(f"nlpapps: warning: {old} is deprecated; {new}", err=True)


@click.group(cls=App, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nlpapps")
def cli():
    """Recurrent-network applications: train, evaluate and export sequence models from the shell."""


@cli.command()
@click.argument("recipe")
@click.option("--epochs", type=click.IntRange(min=1), help="Training epochs (train.epochs).")
@click.option("--batch-size", type=click.IntRange(min=1), help="Batch size (train.batch_size).")
@click.option("--cell", metavar="[" + "|".join(recipes.CELLS) + "]", help="Recurrent cell (model.cell).")
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
@models_option("Where the export (NAME/VERSION/) and the training runs go.")
@click.option("--output", hidden=True, type=click.Path(file_okay=False), help="The same as --models.")
def run(recipe, overrides, models, output, **flags):
    """Train, evaluate and export a task: a recipe name (sentiment, classify, spam, ...) or a .toml file.
    The export is named after the recipe: `--model NAME` in the other commands."""
    output = models if output is None else output  # --output: the name --models had in `run`
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
        click.echo(f"\ntry it: {next_step(settings.task, settings.name, output)}")
        click.echo(f"exported {settings.task} model to {path}")


def _require_writable(folder):
    """Refuse a --models folder that cannot take an export before any work starts, creating nothing."""
    path = Path(folder).absolute()
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is None or not existing.is_dir():
        raise UserError(f"--models {folder}: {existing} is not a folder")
    try:  # a real write, not os.access: read-only file systems and /proc refuse even root
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as e:
        raise UserError(f"--models {folder}: cannot write in {existing} ({e.strerror})") from None


def _read_texts(texts):
    """Arguments, or stdin lines for '-', as raw bytes: the model decides what invalid UTF-8 means."""
    if list(texts) == ["-"]:
        return [line.rstrip(b"\r\n") for line in sys.stdin.buffer]
    return [t.encode("utf-8", "surrogateescape") for t in texts]


# The command that answers with each task's exports.
COMMAND_OF = {
    "sentiment": "predict",
    "classify": "predict",
    "translate": "translate",
    "forecast": "forecast",
    "generate": "generate",
}


def resolve_model(model, models, tasks_served, command, expected=None):
    """The export to use and its metadata. `model` is a model's name (its newest version under
    `models`) or a folder: an export, or a model's folder of versions. Refuses an export of a task
    this command does not serve, naming the command that does, and one of another task than
    `expected` (a task named the old way)."""
    from nlpapps import export

    path = Path(model)
    if (path / "saved_model.pb").is_file() or not _is_name(model):
        found = export.versions(path) if not (path / "saved_model.pb").is_file() else []
        path = path / str(found[-1]) if found else path
    else:
        path = export.latest(models, model)
    meta = export.metadata(path)
    task = meta.get("task")
    if task not in tasks_served:
        other = COMMAND_OF.get(task, task)
        raise UserError(
            f"{path} is a {task} model: `nlpapps {command}` serves {' and '.join(tasks_served)} models; "
            f"use `nlpapps {other}`"
        )
    if expected and task != expected:
        raise UserError(f"{path} is a {task} model, not a {expected} model")
    return path, meta


def _is_name(model):
    """A model's name (a recipe's: letters, digits, _ - .), not a path."""
    return bool(model) and "/" not in model and model not in (".", "..") and Path(model).name == model


def old_model_argument(texts, model, models):
    """`predict MODEL TEXT...`, the old spelling: the first of several texts names the model when it
    is a task, a recipe or a model under `models`. (texts, model, the task it names if any); with
    --model PATH as well, the path is the model and MODEL the task it must be."""
    from nlpapps import tasks

    first = texts[0] if len(texts) > 1 else None
    known = first in tasks.TASKS or first in recipes.available() or (Path(models) / str(first)).is_dir()
    if not first or not _is_name(first) or not known:
        return texts, model, None
    deprecated(f"`nlpapps predict {first} TEXT...`", f"use `nlpapps predict --model {first} TEXT...`")
    return texts[1:], model or first, first if first in tasks.TASKS else None


def next_step(task, name, models):
    """The command that tries the model just written."""
    where = "" if models == "saved_models" else f" --models {models}"
    example = {
        "predict": "'What a wonderful film.'",
        "translate": "'Hello.'",
        "forecast": "--input readings.csv",
    }.get(COMMAND_OF.get(task, task), "")
    return f"nlpapps {COMMAND_OF.get(task, task)} --model {name}{where} {example}".rstrip()


@cli.command()
@click.argument("texts", nargs=-1, required=True)
@model_option(None, "sentiment, classify, spam, ...; default: sentiment")
@models_option()
@click.option("--top-k", type=click.IntRange(min=1), help="Show the K most likely labels (classify).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line instead of TSV.")
def predict(texts, model, models, top_k, as_json):
    """Run an exported text model (sentiment, classify) on TEXTS, or '-' to read one text per line
    from stdin; one line out for each: the text, its label and score (or probability)."""
    from nlpapps import tasks

    texts, model, expected = old_model_argument(texts, model, models)
    path, meta = resolve_model(model or "sentiment", models, tasks.TEXT_IN, "predict", expected)
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


FORECAST_HELP = """Forecast with an exported forecast model: after the last reading of --input FILE, or after
every row arriving on stdin with --stream (its header first).

\b
Output: one CSV line per forecast: time (the reading's), then each target at +1 ... +horizon, each
column's unit in brackets, then status. "+h" is h of the model's steps (its data's interval: 1 hour
for the shipped weather) after the reading's time; an event (precip>0) is its probability. status is
"new", or "stands" where a row was skipped (unreadable, repeated or earlier time) and the line repeats
the standing forecast. --json gives one JSON object per line instead, with names and units.

--input and --stream read rows alike: the model's features must all be columns of the header; a
value that is not a number is carried forward, a row that cannot be placed after the previous one is
skipped, each with a warning on stderr."""


def _finite(row):
    """NaN (a text without words has no score) as JSON's null."""
    return {k: None if isinstance(v, float) and v != v else v for k, v in row.items()}


@cli.command("forecast", help=FORECAST_HELP)
@click.argument("name", required=False, metavar="")
@click.option("--input", "input_path", type=click.Path(), help="A CSV of readings: the forecast after its last row.")
@click.option("--stream", is_flag=True, help="Read CSV rows from stdin (header first); one forecast line per row.")
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON object per line: time, status, each target's unit and values."
)
@model_option("forecast", "forecast, ...; default: forecast")
@models_option()
def forecast_(name, input_path, stream, as_json, model, models):
    if name is not None:  # the old spelling, `forecast MODEL`
        deprecated(f"`nlpapps forecast {name}`", f"use `nlpapps forecast --model {name}`")
        model = name if model == "forecast" else model
    if bool(input_path) == stream:
        raise UserError("give exactly one of --input FILE or --stream")
    path, meta = resolve_model(model, models, ("forecast",), "forecast")
    import_tensorflow()
    import tensorflow as tf

    from nlpapps.cli import forecast_io as forecast

    loaded = tf.saved_model.load(str(path))
    if input_path:
        times, readings, seconds = forecast.read_input(input_path, meta, _warn)
        served = loaded.signatures["forecast"]
        out = served(readings=tf.constant(readings[None]), time=tf.constant(seconds[None]))
        write = forecast.Lines(meta, forecast.output_shapes(served), as_json)
        for text in (write.header(), write.line(times[-1].isoformat(), {k: out[k][0].numpy() for k in write.outputs})):
            if text:
                click.echo(text)
        return
    write = forecast.Lines(meta, forecast.output_shapes(loaded.signatures["step"]), as_json)
    rows = forecast.Rows(meta, "stdin", _warn)
    lines = (raw.decode("utf-8", "replace") for raw in sys.stdin.buffer)
    for text in forecast.stream(lines, loaded.signatures, rows, write):
        print(text, flush=True)


def _warn(text):
    print(f"nlpapps: warning: {printable(text)}", file=sys.stderr, flush=True)


@cli.command()
@click.argument("recipe", metavar="TASK")
@click.option(
    "--folds", type=click.IntRange(min=2), default=9, show_default=True, help="Test blocks after the first quarter."
)
@click.option("--epochs", type=click.IntRange(min=1), default=12, show_default=True, help="Epochs each fold trains.")
@click.option("--data", help="A .csv/.tsv file of readings (data.source).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Set any recipe key.")
@click.option(
    "--output", default="backtests", show_default=True, type=click.Path(file_okay=False), help="Where it goes."
)
def backtest(recipe, folds, epochs, data, overrides, output):
    """Judge a task's recipe over rolling origins against references (forecast): a fresh model per
    test block, trained on everything before it; prints the table, writes backtest.json and a PNG."""
    given = [f"data.source={json.dumps(data)}"] if data else []
    settings = recipes.load(recipe, [*given, *overrides])
    if settings.task != "forecast":
        raise UserError(f"backtest: {recipe} is a {settings.task} recipe; only forecast recipes have a backtest")
    _require_writable(output)
    import_tensorflow()
    from nlpapps import training
    from nlpapps.tasks.forecast import backtest as forecast_backtest

    with native_logs_held():
        training.strategy(settings)
    folder = forecast_backtest.run(settings, output, folds, epochs, log=click.echo)
    click.echo(f"\nbacktest written to {folder / 'backtest.json'} and {folder / 'backtest.png'}")


@cli.command()
@click.argument("texts", nargs=-1, required=True)
@click.option(
    "--beam",
    type=click.IntRange(min=1),
    help="Beam width; 1 is greedy. Default: the width the model was exported with (decode.beam_width).",
)
@model_option("translate", "translate, ...; default: translate")
@click.option("--name", hidden=True, help="Deprecated: --model.")
@models_option()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line: text, translation, score.")
@click.option(
    "--show-attention",
    "attention_png",
    type=click.Path(dir_okay=False),
    help="Also draw each translation's attention weights to this PNG (PNG-2.png, ... for more texts); "
    "uses the model's own beam width.",
)
def translate(texts, beam, model, name, models, as_json, attention_png):
    """Translate TEXTS (or '-' to read one text per line from stdin, one line out for each)."""
    if name is not None:
        deprecated("--name", f"use --model {name}")
        model = name if model == "translate" else model
    path, meta = resolve_model(model, models, ("translate",), "translate")
    own = meta.get("recipe", {}).get("decode.beam_width")
    if attention_png and beam is not None and beam != own:
        raise UserError(f"--show-attention draws the model's own beam (decode.beam_width = {own}): drop --beam {beam}")
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
            click.echo(_translation_line(text, translation, score, as_json))
            if attention_png:
                target = _numbered(Path(attention_png), start + i + 1)
                task.show_attention(outputs, i, target)
                click.echo(f"attention of text {start + i + 1}: {target}", err=True)


def _translation_line(text, translation, score, as_json):
    """One translation as printed: its TSV-escaped text, or a JSON object with the source and score."""
    translation = translation.decode("utf-8", "replace")
    if not as_json:
        return translation.translate(TSV_ESCAPES)
    line = {"text": text.decode("utf-8", "replace"), "translation": translation, "score": round(float(score), 4)}
    return json.dumps(line, ensure_ascii=False)


def _numbered(png, n):
    """The PNG of the n-th text: the path given for the first, PNG-n.png for the others."""
    return png if n == 1 else png.with_name(f"{png.stem}-{n}{png.suffix or '.png'}")


SERVE_HELP = """Answer over HTTP with TensorFlow Serving's REST API, so that its clients work unchanged:
the newest version of every model under --models (or of each --model NAME), loaded and warmed up
once, then answered in milliseconds.

\b
  POST /v1/models/NAME[/versions/N]:predict   {"instances": [...]} or {"inputs": {...}},
                                              optionally "signature_name"
  GET  /v1/models/NAME[/versions/N]           the version served and its state
  GET  /v1/models/NAME/metadata               each signature's inputs and outputs
  GET  /                                      a page to try each model by hand

A new version written into the folder (`nlpapps run`) is loaded, warmed up and served without a
restart. One log line per request on stderr; Ctrl-C stops."""


@cli.command(help=SERVE_HELP)
@click.option(
    "--model", "-m", "names", multiple=True, metavar="NAME", help="Serve this model (repeatable); default: all."
)
@models_option()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on; 0.0.0.0: every interface.")
@click.option(
    "--port", default=8501, show_default=True, type=click.IntRange(0, 65535), help="TCP port; 0: any free port."
)
@click.option(
    "--poll-seconds",
    default=2.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="How often --models is looked at for new versions.",
)
def serve(names, models, host, port, poll_seconds):
    if not Path(models).is_dir():
        raise UserError(f"--models {models}: no such folder")
    import_tensorflow()
    from nlpapps.cli import server as serving

    lock = threading.Lock()

    def log(text):  # one write a line: lines of requests answered side by side stay whole
        with lock:
            sys.stderr.write(f"nlpapps serve: {printable(text)}\n")
            sys.stderr.flush()

    server, stop = None, None
    try:
        server, stop = serving.start(serving.Models(models, names, log), host, port, poll_seconds, log)
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
    served = ", ".join(f"{v.name} {v.number}" for v in server.models.serving.values()) or "none yet"
    log(f"ready on http://{host}:{server.server_address[1]}/v1/models/NAME:predict (serving {served})")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        log("stopped")
    finally:
        stop.set()
        server.server_close()


# ------------------------------------------------------------------------------------ generate


@cli.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    options_metavar="[MODEL] [--NAME VALUE]... [OPTIONS]",
)
@click.option(
    "--condition",
    "given",
    multiple=True,
    metavar="VALUE",
    help="A condition's value, in the model's order of conditions (repeat for several); "
    "or name each: --domain movie --score 3.5.",
)
@click.option("-n", "--count", type=click.IntRange(min=1), default=1, show_default=True, help="Texts to write.")
@click.option(
    "--temperature", type=click.FloatRange(min=0, min_open=True), help="Default: the model's (sample.temperature)."
)
@click.option("--top-k", type=click.IntRange(min=0), help="Draw among the K most likely characters; 0: all.")
@click.option(
    "--top-p", type=click.FloatRange(0, 1, min_open=True), help="Draw among the most likely characters making up P."
)
@click.option("--max-length", type=click.IntRange(min=1), help="Characters at most per text.")
@click.option("--seed", type=click.IntRange(min=0), help="The same seed writes the same texts; default: a fresh one.")
@model_option("generate", "generate, names, ...; default: generate")
@models_option()
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="One JSON object per line: conditions, text, score (its log-probability), seed.",
)
@click.pass_context
def generate(ctx, given, count, temperature, top_k, top_p, max_length, seed, model, models, as_json):
    """Write texts with an exported generate model, one a line. The model's conditions are given as
    --NAME VALUE (--domain movie --score 3.5) or as --condition VALUE in the model's order."""
    extra = list(ctx.args)
    if extra and not extra[0].startswith("-"):  # the old spelling: the model's name first
        model = extra.pop(0)
        deprecated(f"`nlpapps generate {model}`", f"use `nlpapps generate --model {model}`")
    path, meta = resolve_model(model, models, ("generate",), "generate")
    values = _generate_conditions(meta, given, extra)
    chosen = {"temperature": temperature, "top_k": top_k, "top_p": top_p, "max_length": max_length}
    settings = {**meta["sample"], **{k: v for k, v in chosen.items() if v is not None}}
    seed = int.from_bytes(os.urandom(4), "little") if seed is None else seed
    import_tensorflow()
    import tensorflow as tf

    sample = tf.saved_model.load(str(path)).signatures["sample"]
    inputs = {k: tf.constant([v], tf.float32 if isinstance(v, float) else tf.string) for k, v in values.items()}
    out = sample(
        **inputs,
        temperature=tf.constant(settings["temperature"], tf.float32),
        top_k=tf.constant(settings["top_k"], tf.int32),
        top_p=tf.constant(settings["top_p"], tf.float32),
        max_length=tf.constant(settings["max_length"], tf.int32),
        seed=tf.constant(seed, tf.int64),
        count=tf.constant(count, tf.int32),
    )
    for written, score in zip(out["text"].numpy(), out["score"].numpy()):
        written = written.decode("utf-8", "replace")
        if as_json:
            row = {"conditions": values, "text": written, "score": round(float(score), 4), "seed": seed}
            click.echo(json.dumps(row, ensure_ascii=False))
        else:
            click.echo(written.translate(TSV_ESCAPES))


def _generate_conditions(meta, given, extra):
    """{condition: value} from --condition values (in order) and --NAME VALUE pairs, checked against
    the export's conditions: a category must be one it was trained on, a number inside its range."""
    conditions = meta["conditions"]
    if len(given) > len(conditions):
        raise UserError(f"{len(given)} --condition values; this model takes {len(conditions)}: {', '.join(conditions)}")
    raw = dict(zip(conditions, given))
    extra = list(extra)
    while extra:
        flag = extra.pop(0)
        key, _, value = flag[2:].partition("=") if flag.startswith("--") else (flag, "", "")
        key = key.replace("-", "_")
        if key not in conditions:
            known = ", ".join(f"--{c}" for c in conditions) or "none"
            raise UserError(f"unexpected {flag!r}; this model's conditions: {known}")
        if not value:
            if not extra:
                raise UserError(f"--{key} needs a value")
            value = extra.pop(0)
        raw[key] = value
    values = {}
    for name, spec in conditions.items():
        if name not in raw:
            raise UserError(f"missing --{name} ({_describe_condition(spec)})")
        value = raw[name]
        if spec["kind"] == "category":
            if value not in spec["values"]:
                raise UserError(f"--{name} {value!r}: not one of {', '.join(spec['values'])}")
            values[name] = value
            continue
        try:
            number = float(value)
        except ValueError:
            raise UserError(f"--{name} {value!r}: not a number") from None
        low, high = spec["range"]
        if not low <= number <= high:  # the export itself clamps; the command refuses
            raise UserError(f"--{name} {value}: outside the range the model was trained on, [{low:g}, {high:g}]")
        values[name] = number
    return values


def _describe_condition(spec):
    if spec["kind"] == "category":
        return "one of " + ", ".join(spec["values"])
    return f"a number in [{spec['range'][0]:g}, {spec['range'][1]:g}]"


@cli.command("list")
@models_option()
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
