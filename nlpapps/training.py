"""The one fit loop every task uses: Keras callbacks for validation, early stopping, resume, logs."""
import hashlib
import json
import sys
import warnings
from pathlib import Path

import keras


def run_dir(output_root, recipe):
    """Where a run keeps its TensorBoard logs and resume backup: one folder per distinct recipe,
    so running the same command again resumes it, and a different recipe starts afresh."""
    key = hashlib.sha256(json.dumps(recipe.settings, sort_keys=True).encode()).hexdigest()[:10]
    return Path(output_root) / recipe.name / "runs" / key


def seed_everything(seed):
    keras.utils.set_random_seed(seed)


def fit(model, train, validation, settings, workdir, monitor="val_loss", mode="min", class_weight=None):
    """Train `model` (compiled) and return its history; best validation weights are restored.
    class_weight: {class id: weight} for a single-output model, as Keras' fit takes it."""
    workdir = Path(workdir)
    callbacks = [
        keras.callbacks.BackupAndRestore(str(workdir / "backup")),
        keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=settings["patience"],
                                      restore_best_weights=True),
        keras.callbacks.TensorBoard(str(workdir / "logs")),
    ]
    # One line per epoch when not on a terminal (logs, CI); live bars on a terminal.
    verbose = 1 if sys.stdout.isatty() else 2
    with warnings.catch_warnings():
        # Length-bucketed datasets have no known size, so Keras finds each epoch's end by running out.
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        history = model.fit(train, validation_data=validation, epochs=settings["epochs"],
                            callbacks=callbacks, verbose=verbose, shuffle=False,
                            class_weight=class_weight)
    return history.history
