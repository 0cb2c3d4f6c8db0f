"""One module per application; each exposes NAME, run(recipe, output_root) and rows(outputs, top_k)."""
import importlib

TASKS = ("sentiment", "classify")


def get(name):
    return importlib.import_module(f"nlpapps.tasks.{name}")
