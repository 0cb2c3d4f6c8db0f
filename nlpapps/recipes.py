"""Task recipes: TOML files that name every setting of a task with its default.

A task's own recipe (nlpapps/tasks/<task>.toml, shipped in the package; the top-level tasks/ links
to them) is the schema: any other recipe for that task and every --set override may only change keys
it names, keeping their types. A recipe's name (its file name) names its exports.
"""

import copy
import tomllib
from dataclasses import dataclass
from pathlib import Path

from nlpapps.errors import UserError

# The shipped recipes sit beside the task modules; one in ./tasks/ of the working folder wins.
PROJECT_RECIPES = Path(__file__).resolve().parent / "tasks"


@dataclass
class Recipe:
    task: str
    settings: dict  # section -> key -> value
    source: Path

    @property
    def name(self):
        """The recipe's file name: exports go to saved_models/<name>/<version>."""
        return self.source.stem

    def __getitem__(self, section):
        return self.settings[section]

    def flat(self):
        return {f"{s}.{k}": v for s, table in self.settings.items() for k, v in table.items()}


CELLS = ("rnn", "lstm", "gru", "peephole")  # the recurrent cells of blocks/, model.cell's choices


def _at_least(low):
    return lambda v: None if v >= low else f"must be at least {low}"


def _fraction(v):
    return None if 0.0 <= v < 1.0 else "must be in [0, 1)"


def _one_of(*choices):
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)}"


def _split(v):
    if len(v) != 3 or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 for x in v):
        return "must be three positive fractions: train, validation, test"
    return None


# Allowed values, checked before any work starts; a key means the same in every task that has it.
RULES = {
    "data.split": _split,
    "data.neutral_band": _at_least(0.0),
    "data.max_bad_rows": _fraction,
    "text.vocab_size": _at_least(3),  # padding, out-of-vocabulary, and at least one word
    "text.ngrams": _at_least(1),
    "text.max_tokens": _at_least(1),
    "text.vocab_sample_rows": _at_least(1),
    "data.cache_rows": _at_least(0),
    "train.shuffle_buffer": _at_least(1),
    "train.steps_per_epoch": _at_least(0),
    "model.embedding_dim": _at_least(1),
    "model.vectors": _one_of("glove-100", "none"),
    "model.lexicon": _one_of("vader", "none"),
    "text.vectors_words": _at_least(0),
    "text.digits": _one_of("keep", "shape"),
    "model.embedding_dropout": _fraction,
    "model.cell": _one_of(*CELLS),
    "model.units": _at_least(1),
    "model.depth": _at_least(1),
    "model.dropout": _fraction,
    "model.pooling": _one_of("last", "max", "mean"),
    "data.max_source_words": _at_least(0),
    "data.max_target_words": _at_least(0),
    "text.source_vocab": _at_least(3),
    "text.target_vocab": _at_least(3),
    "model.decoder_units": _at_least(1),
    "model.decoder_depth": _at_least(1),
    "model.attention": _one_of("additive", "dot", "none"),
    "model.attention_units": _at_least(1),
    "decode.beam_width": _at_least(1),
    "decode.length_penalty": _at_least(0.0),
    "decode.max_length_factor": lambda v: None if v > 0 else "must be positive",
    "decode.max_length_extra": _at_least(0),
    "decode.no_repeat_ngram": lambda v: None if v == 0 or v >= 2 else "must be 0 (no blocking) or 2 or more",
    "evaluation.max_pairs": _at_least(0),
    "train.epochs": _at_least(1),
    "train.batch_size": _at_least(1),
    "train.learning_rate": lambda v: None if v > 0 else "must be positive",
    "train.patience": _at_least(0),
    "train.score_weight": _at_least(0.0),
    "train.class_weights": _one_of("auto", "on", "off"),
    "train.strategy": _one_of("default", "mirrored", "multi-worker"),
    "data.skip_rows": _at_least(0),
    "data.max_gap": _at_least(0),
    "data.event_window": _at_least(1),
    "data.anomaly_steps": _at_least(1),
    "data.time_features": lambda v: None if set(v) <= {"day", "year"} else 'may hold only "day" and "year"',
    "model.horizon": _at_least(1),
    "model.head_units": _at_least(0),
    "model.ensemble": _at_least(1),
    "train.window": _at_least(2),
    "train.stride": _at_least(1),
    "train.event_weight": _at_least(0.0),
    "data.max_chars": _at_least(0),
    "data.conditions": lambda v: None if all(isinstance(c, str) and c for c in v) else "must be a list of column names",
    "text.min_count": _at_least(1),
    "model.condition_dim": _at_least(1),
    "sample.temperature": lambda v: None if v > 0 else "must be positive",
    "sample.top_k": _at_least(0),
    "sample.top_p": lambda v: None if 0 < v <= 1 else "must be in (0, 1]",
    "sample.max_length": _at_least(1),
    "evaluate.per_value": _at_least(1),
    "evaluate.ngram_order": _at_least(1),
    "evaluate.control_texts": _at_least(1),
    "data.train_stations": lambda v: (
        None if all(isinstance(s, str) and s for s in v) and len(set(v)) == len(v) else "must be distinct station names"
    ),
}

# Values a task cannot use although the key allows them elsewhere: (task, key) -> check.
TASK_RULES = {
    ("forecast", "model.bidirectional"): lambda v: (
        "a streaming forecast cannot read the future; set it to false" if v else None
    ),
}


# Keys a task no longer has: (task, key) -> what replaced it, said instead of "unknown setting".
RETIRED = {
    ("forecast", "train.carry_state"): "every training window starts from zeros, as the served stream starts",
    ("forecast", "train.burn_in"): "every step of a training window is scored",
    ("forecast", "model.memory"): "the state runs on over the whole stream",
    ("forecast", "data.changes"): "the model reads each reading as it is (data.anomalies: as a departure)",
    ("forecast", "data.anomalies_too"): "data.anomalies reads a feature as its departure from its trailing mean",
    ("forecast", "train.quantity_loss"): "quantities train on the squared error, their 10 %/90 % quantiles on "
    "the pinball loss",
}


def check(recipe):
    """Refuse the first setting outside its allowed values, naming it."""
    for key, value in recipe.flat().items():
        rule = TASK_RULES.get((recipe.task, key), RULES.get(key))
        problem = rule(value) if rule else None
        if problem:
            raise UserError(f"{key} = {value!r}: {problem}")


def recipe_dirs():
    return [Path.cwd() / "tasks", PROJECT_RECIPES]


def available():
    """Recipe names found on the search path, first hit wins."""
    names = {}
    for folder in recipe_dirs():
        for path in sorted(folder.glob("*.toml")):
            names.setdefault(path.stem, path)
    return names


def _read(path):
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path}: not a valid TOML recipe ({e})") from None


def find(name_or_path):
    """Path of a recipe given a task name ('sentiment') or a .toml path."""
    if name_or_path.endswith(".toml"):
        path = Path(name_or_path)
        if not path.is_file():
            raise UserError(f"recipe file not found: {name_or_path}")
        return path
    known = available()
    if name_or_path not in known:
        raise UserError(f"unknown task or recipe {name_or_path!r}; choose one of: {', '.join(known)}")
    return known[name_or_path]


def _parse(text):
    """A --set value as TOML (numbers, booleans, lists), else as a plain string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _merge(base, changes, origin, task):
    for section, table in changes.items():
        if section == "task":
            continue
        if section not in base or not isinstance(table, dict):
            raise UserError(f"{origin}: unknown section {section!r} for task {task}")
        for key, value in table.items():
            _assign(base, f"{section}.{key}", value, origin, task)


def _assign(settings, dotted, value, origin, task):
    section, _, key = dotted.partition(".")
    if (task, dotted) in RETIRED:
        raise UserError(f"{origin}: {dotted} was removed: {RETIRED[task, dotted]}; leave it out")
    if section not in settings or key not in settings[section]:
        known = ", ".join(f"{s}.{k}" for s, t in settings.items() for k in t)
        raise UserError(f"{origin}: unknown setting {dotted!r} for task {task}; known: {known}")
    default = settings[section][key]
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if type(value) is not type(default):
        raise UserError(f"{origin}: {dotted} must be {type(default).__name__}, got {value!r}")
    settings[section][key] = value


def load(name_or_path, overrides=()):
    """Read a recipe, fill it from its task's defaults and apply 'section.key=value' overrides."""
    path = find(name_or_path)
    raw = _read(path)
    task = raw.get("task")
    if not isinstance(task, str):
        raise UserError(f'{path}: a recipe must name its task, e.g. task = "sentiment"')
    default_path = PROJECT_RECIPES / f"{task}.toml"
    defaults = _read(default_path) if default_path.is_file() else {}
    if defaults.get("task") != task:
        raise UserError(f"{path}: unknown task {task!r}")
    settings = copy.deepcopy({k: v for k, v in defaults.items() if isinstance(v, dict)})
    if path.resolve() != default_path.resolve():
        _merge(settings, raw, path, task)
    for item in overrides:
        dotted, sep, text = item.partition("=")
        if not sep:
            raise UserError(f"--set expects key=value, got {item!r}")
        _assign(settings, dotted.strip(), _parse(text.strip()), "--set", task)
    recipe = Recipe(task=task, settings=settings, source=path)
    check(recipe)
    return recipe
