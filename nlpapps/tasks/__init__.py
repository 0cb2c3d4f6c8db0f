"""One module per application; each exposes NAME and run(recipe, output_root, log); the text-in
tasks also rows(outputs, top_k) for `nlpapps predict`."""
import importlib

TASKS = ("sentiment", "classify", "translate")
TEXT_IN = ("sentiment", "classify")  # the tasks `nlpapps predict` serves


def get(name):
    return importlib.import_module(f"nlpapps.tasks.{name}")
