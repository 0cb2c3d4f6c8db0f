"""Task recipes: TOML files that name every setting of a task with its default.

A task's own recipe (tasks/<task>.toml) is the schema: any other recipe for that task and every
--set override may only change keys it names, keeping their types.
"""
import copy
import tomllib
from dataclasses import dataclass
from pathlib import Path

from nlpapps.errors import UserError

# Recipes live in the project's tasks/ folder; one in ./tasks/ of the working folder wins.
PROJECT_RECIPES = Path(__file__).resolve().parent.parent / "tasks"


@dataclass
class Recipe:
    task: str
    settings: dict  # section -> key -> value
    source: Path

    def __getitem__(self, section):
        return self.settings[section]

    def flat(self):
        return {f"{s}.{k}": v for s, table in self.settings.items() for k, v in table.items()}


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
        raise UserError(f"{path}: a recipe must name its task, e.g. task = \"sentiment\"")
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
    return Recipe(task=task, settings=settings, source=path)
