"""Versioned, atomic SavedModel exports in TensorFlow Serving layout:
saved_models/<task>/<version>/ with saved_model.pb, variables/, metadata.json and extras beside."""
import datetime
import json
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


def latest(output_root, task):
    found = versions(Path(output_root) / task)
    if not found:
        raise UserError(f"no trained {task} model in {Path(output_root) / task}; "
                        f"run `nlpapps run {task}` first or pass --model PATH")
    return Path(output_root) / task / str(found[-1])


def load_keras(path):
    """The `model.keras` of an export, with the project's layers and text standardization known."""
    import keras

    import nlpapps.blocks  # noqa: F401  (registers the recurrent layers)
    import nlpapps.data.text  # noqa: F401  (registers standardize and ServingIds)
    return keras.models.load_model(Path(path) / "model.keras" if Path(path).is_dir() else path, safe_mode=True)


def save(output_root, task, *, endpoint, input_signature, track, keras_model, metadata, extras=()):
    """Write the export to a temporary folder, then rename it into the next free version.

    endpoint: the serving function (named inputs → dict of named outputs);
    track: the Keras objects whose variables and lookup tables it uses;
    extras: (file name, writer(path)) pairs such as plots, written beside the SavedModel.
    """
    import keras

    task_dir = Path(output_root) / task
    task_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=task_dir))
    try:
        archive = keras.export.ExportArchive()
        for obj in track:
            archive.track(obj)
        archive.add_endpoint("serving_default", endpoint, input_signature=input_signature)
        archive.write_out(str(tmp), verbose=False)
        keras_model.save(tmp / "model.keras")
        for name, write in extras:
            write(tmp / name)
        metadata = {"task": task, "nlpapps": __version__,
                    "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    **metadata}
        (tmp / "metadata.json").write_text(json.dumps(metadata, indent=2, default=str) + "\n")
        for _ in range(100):  # another run may take a version at the same moment: take the next
            target = task_dir / str((versions(task_dir) or [0])[-1] + 1)
            try:
                tmp.rename(target)  # fails on an existing, non-empty version: never overwrites
                return target
            except OSError:
                continue
        raise UserError(f"could not write a new version under {task_dir}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
