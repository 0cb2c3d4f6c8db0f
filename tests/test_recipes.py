"""Recipes: tasks/<task>.toml is the schema; other recipe files and --set may change its keys only."""

import tomllib
from pathlib import Path

import pytest

from nlpapps import recipes
from nlpapps.errors import UserError

SENTIMENT_TOML = Path(__file__).resolve().parent.parent / "nlpapps" / "tasks" / "sentiment.toml"


@pytest.fixture(scope="module")
def defaults():
    with open(SENTIMENT_TOML, "rb") as f:
        raw = tomllib.load(f)
    return {k: v for k, v in raw.items() if isinstance(v, dict)}


def write(tmp_path, text, name="recipe.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_load_by_name_gives_every_default(defaults):
    recipe = recipes.load("sentiment")
    assert recipe.task == "sentiment"
    assert recipe.source.resolve() == SENTIMENT_TOML
    assert recipe.settings == defaults
    assert recipe["model"]["cell"] == "gru"
    assert recipe.flat()["data.source"] == "shipped:sentiment_snippets"


def test_load_by_path_of_the_task_recipe(defaults):
    recipe = recipes.load(str(SENTIMENT_TOML))
    assert recipe.task == "sentiment"
    assert recipe.settings == defaults


def test_partial_recipe_is_filled_from_the_task_defaults(tmp_path, defaults):
    path = write(tmp_path, 'task = "sentiment"\n\n[model]\nunits = 8\n')
    recipe = recipes.load(str(path))
    assert recipe.task == "sentiment"
    assert recipe.source == path
    assert recipe["model"]["units"] == 8
    expected = {s: dict(t) for s, t in defaults.items()}
    expected["model"]["units"] = 8
    assert recipe.settings == expected


def test_loading_does_not_leak_changes_into_later_loads(tmp_path, defaults):
    recipes.load(str(write(tmp_path, 'task = "sentiment"\n[data]\nsplit = [0.5, 0.25, 0.25]\n')), ["model.units=3"])
    assert recipes.load("sentiment").settings == defaults


def test_set_typing():
    recipe = recipes.load(
        "sentiment",
        [
            "model.units=8",  # int
            "data.neutral_band=1",  # float key given an int: becomes a float
            "train.learning_rate=1e-3",  # float
            "model.bidirectional=false",  # bool
            "data.split=[0.7, 0.2, 0.1]",  # list
            "data.source=reviews/my file.csv",  # not TOML: a plain string
            'model.cell="lstm"',  # quoted TOML string
            "data.domain=",  # empty string
        ],
    )
    flat = recipe.flat()
    assert flat["model.units"] == 8 and type(flat["model.units"]) is int
    assert flat["data.neutral_band"] == 1.0 and type(flat["data.neutral_band"]) is float
    assert flat["train.learning_rate"] == pytest.approx(0.001)
    assert flat["model.bidirectional"] is False
    assert flat["data.split"] == [0.7, 0.2, 0.1]
    assert flat["data.source"] == "reviews/my file.csv"
    assert flat["model.cell"] == "lstm"
    assert flat["data.domain"] == ""


def test_later_set_wins_over_earlier_and_over_the_file(tmp_path):
    path = write(tmp_path, 'task = "sentiment"\n[model]\nunits = 8\n')
    recipe = recipes.load(str(path), ["model.units=16", "model.units=32"])
    assert recipe["model"]["units"] == 32


@pytest.mark.parametrize(
    "override, words",
    [
        ("model.nope=1", ["unknown setting", "model.nope"]),
        ("nope.units=1", ["unknown setting", "nope.units"]),
        ("units=1", ["unknown setting"]),
        ("model.units", ["key=value"]),
    ],
)
def test_unknown_set_key_is_a_user_error(override, words):
    with pytest.raises(UserError) as e:
        recipes.load("sentiment", [override])
    for word in words:
        assert word in str(e.value)


@pytest.mark.parametrize(
    "override",
    [
        "model.units=8.5",  # float for an int
        "model.units=true",  # bool for an int
        "train.learning_rate=true",  # bool for a float
        "model.bidirectional=1",  # int for a bool
        "data.split=0.8",  # number for a list
        "model.units=many",  # string for an int
    ],
)
def test_wrong_type_is_a_user_error(override):
    key = override.partition("=")[0]
    with pytest.raises(UserError, match="must be") as e:
        recipes.load("sentiment", [override])
    assert key in str(e.value)


def test_unknown_section_in_a_recipe_file_is_a_user_error(tmp_path):
    path = write(tmp_path, 'task = "sentiment"\n[modle]\nunits = 8\n')
    with pytest.raises(UserError, match="unknown section 'modle'"):
        recipes.load(str(path))


def test_unknown_key_in_a_recipe_file_is_a_user_error(tmp_path):
    path = write(tmp_path, 'task = "sentiment"\n[model]\nunitz = 8\n')
    with pytest.raises(UserError, match="unknown setting 'model.unitz'"):
        recipes.load(str(path))


def test_wrong_type_in_a_recipe_file_is_a_user_error(tmp_path):
    path = write(tmp_path, 'task = "sentiment"\n[model]\nunits = "eight"\n')
    with pytest.raises(UserError, match="model.units must be int"):
        recipes.load(str(path))


def test_unknown_task_name_is_a_user_error():
    with pytest.raises(UserError, match="unknown task or recipe 'sentimentt'") as e:
        recipes.load("sentimentt")
    assert "sentiment" in str(e.value).split("choose one of:")[1]


def test_recipe_file_naming_an_unknown_task_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="unknown task 'nope'"):
        recipes.load(str(write(tmp_path, 'task = "nope"\n')))


def test_recipe_file_naming_a_recipe_that_is_not_a_task_is_a_user_error(tmp_path):
    """tasks/ also holds partial recipes (spam.toml is a classify recipe). `task = "spam"` names no
    task: it must be refused, not turned into a settings table with no [train] section."""
    if not (SENTIMENT_TOML.parent / "spam.toml").is_file():
        pytest.skip("no tasks/spam.toml in this checkout")
    with pytest.raises(UserError, match="'spam'"):
        recipes.load(str(write(tmp_path, 'task = "spam"\n')))


def test_recipe_without_task_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="must name its task"):
        recipes.load(str(write(tmp_path, "[model]\nunits = 8\n")))


def test_missing_recipe_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="recipe file not found"):
        recipes.load(str(tmp_path / "absent.toml"))


def test_invalid_toml_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not a valid TOML recipe"):
        recipes.load(str(write(tmp_path, 'task = "sentiment"\n[model\nunits = 8\n')))
