"""Versioned, atomic SavedModel exports in TensorFlow Serving layout:
saved_models/<model>/<version>/ with saved_model.pb, variables/, metadata.json and extras beside.
<model> is the recipe's name (sentiment, spam, ...), so each recipe is its own served model."""

import datetime
import json
import os
import shutil
import tempfile
from pathlib import Path

from nlpapps import __version__
from nlpapps.errors import UserError


def versions(task_dir):
    """Existing export versions under a task folder, ascending."""
    task_dir = Path(task_dir)
    if not task_dir.is_dir():
        return []
    return sorted(int(p.name) for p in task_dir.iterdir() if p.name.isdigit() and p.is_dir())


def latest(output_root, name):
    found = versions(Path(output_root) / name)
    if not found:
        raise UserError(
            f"no trained {name} model in {Path(output_root) / name}; "
            f"run `nlpapps run {name}` first or pass --model PATH"
        )
    return Path(output_root) / name / str(found[-1])


def metadata(path, task=None):
    """An export's metadata.json; with `task`, refuses an export made by another task."""
    path = Path(path)
    if not (path / "saved_model.pb").is_file():
        raise UserError(f"{path}: not a SavedModel export")
    if not (path / "metadata.json").is_file():
        raise UserError(f"{path}: not an nlpapps export (no metadata.json)")
    try:
        meta = json.loads((path / "metadata.json").read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{path}/metadata.json: unreadable ({e})") from None
    if task is not None and meta.get("task") != task:
        raise UserError(f"{path} is a {meta.get('task')} model, not a {task} model")
    return meta


def load_keras(path):
    """The `model.keras` of an export, with the project's layers and text standardization known."""
    import keras

    import nlpapps.blocks  # noqa: F401  (registers the recurrent layers)
    import nlpapps.data.series  # noqa: F401  (registers Encode)
    import nlpapps.data.text  # noqa: F401  (registers standardize and ServingIds)

    return keras.models.load_model(Path(path) / "model.keras" if Path(path).is_dir() else path, safe_mode=True)


def save(output_root, recipe, *, endpoints, track, keras_model, metadata, extras=()):
    """Write the export to a temporary folder, then rename it into the next free version of
    saved_models/<recipe name>/.

    endpoints: {signature name: (function, input_signature)}; each function takes named inputs and
        returns a dict of named outputs; "serving_default" is the one TF Serving calls by default;
    track: the Keras objects whose variables and lookup tables the functions use;
    extras: (file name, writer(path)) pairs such as plots, written beside the SavedModel.
    In a multi-worker cluster every worker writes the export (saving reads variables that all of
    them hold together), and only the chief keeps it; the others return None.
    """
    import keras

    from nlpapps import training

    scratch = None if training.is_chief() else Path(tempfile.mkdtemp(prefix="nlpapps-worker-"))
    task_dir = scratch or Path(output_root) / recipe.name
    task_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=task_dir))
    try:
        archive = keras.export.ExportArchive()
        for obj in track:
            archive.track(obj)
        for name, (function, signature) in endpoints.items():
            archive.add_endpoint(name, function, input_signature=signature)
        archive.write_out(str(tmp), verbose=False)
        keras_model.save(tmp / "model.keras")
        for name, write in extras:
            write(tmp / name)
        metadata = {
            "task": recipe.task,
            "model": recipe.name,
            "nlpapps": __version__,
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            **metadata,
        }
        (tmp / "metadata.json").write_text(json.dumps(metadata, indent=2, default=str) + "\n")
        _readable(tmp)
        if scratch:
            return None
        for _ in range(100):  # another run may take a version at the same moment: take the next
            target = task_dir / str((versions(task_dir) or [0])[-1] + 1)
            try:
                tmp.rename(target)  # fails on an existing, non-empty version: never overwrites
                return target
            except OSError:
                continue
        raise UserError(f"could not write a new version under {task_dir}")
    finally:
        shutil.rmtree(scratch or tmp, ignore_errors=True)


def _readable(folder):
    """mkdtemp makes 0700 folders: give the export the modes the user's umask gives any new folder,
    so that another account (TF Serving's) can read it."""
    umask = os.umask(0)
    os.umask(umask)
    for path in [folder, *folder.rglob("*")]:
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)
