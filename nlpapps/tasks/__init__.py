"""One module per application; each exposes NAME and run(recipe, output_root, log); the text-in
tasks also rows(outputs, top_k) for `nlpapps predict`; forecast is served by `nlpapps forecast`."""

import importlib

TASKS = ("sentiment", "classify", "translate", "forecast", "generate")
TEXT_IN = ("sentiment", "classify")  # the tasks `nlpapps predict` serves
TOP_K = ("classify",)  # the tasks whose predictions rank several labels (`predict --top-k`)


def get(name):
    return importlib.import_module(f"nlpapps.tasks.{name}")
