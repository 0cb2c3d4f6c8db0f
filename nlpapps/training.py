"""The one fit loop every task uses: Keras `fit`, validation each epoch, early stopping, TensorBoard
logs, and a resume backup that makes a killed run, run again, end exactly as an unbroken one.

Exact resume. After every epoch the run folder gets one backup file holding every model variable
(weights and the dropout layers' seed-generator states), the optimizer's variables (step count,
moments), the early-stopping state (best value, epochs without improvement, best weights) and the
history so far. Keras' fit is called one epoch at a time, so epoch k of a resumed run starts from
exactly what epoch k of an unbroken run started from. The training data must also be the same:
pass `train` as a function of the epoch, `train(epoch) -> tf.data.Dataset`, whose shuffle seed is
derived from the recipe's seed and the epoch (as `text.pipeline(..., epoch=e)` does), so that the
order of epoch k does not depend on how many epochs this process has run. A plain Dataset is also
accepted; it is then iterated as is, and a resumed run is exact only if its order is the same at
every iteration (no reshuffling).

A run owns its folder: a second run of the same recipe in the same output root refuses at once,
naming the running one; a finished run removes its backup.
"""

import fcntl
import hashlib
import io
import json
import os
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

import keras
import numpy as np

from nlpapps.errors import UserError

BACKUP = "backup.npz"


def run_dir(output_root, recipe):
    """Where a run keeps its TensorBoard logs and resume backup: one folder per distinct recipe,
    so running the same command again resumes it, and a different recipe starts afresh."""
    key = hashlib.sha256(json.dumps(recipe.settings, sort_keys=True).encode()).hexdigest()[:10]
    return Path(output_root) / recipe.name / "runs" / key


def seed_everything(seed):
    keras.utils.set_random_seed(seed)


@contextmanager
def owned(workdir):
    """Hold the run folder's lock for the duration; refuse with one line if another run holds it."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    with open(workdir / "lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            pid = f.read().strip() or "?"
            raise UserError(
                f"another run of this recipe (pid {pid}) is training in {workdir}; wait for it to finish, or stop it"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        try:
            yield
        finally:
            f.truncate(0)
            fcntl.flock(f, fcntl.LOCK_UN)


class _Progress(keras.callbacks.ProgbarLogger):
    """Keras' progress output, saying "Epoch k/N" of the whole run while fit runs one epoch."""

    def __init__(self, epochs):
        super().__init__()
        self.total = epochs

    def set_params(self, params):
        super().set_params({**params, "epochs": self.total})


class _EarlyStopping:
    """Keras' EarlyStopping rule (patience, best weights restored at the end), with its state kept
    as plain values so that it can be saved with the backup."""

    def __init__(self, monitor, mode, patience):
        self.monitor, self.better, self.patience = monitor, (np.less if mode == "min" else np.greater), patience
        self.best, self.best_epoch, self.wait, self.best_weights = None, None, 0, None

    def update(self, epoch, logs, model):
        """Record the epoch's `logs`; True when training should stop."""
        current = logs.get(self.monitor)
        if current is None:
            raise UserError(f"early stopping watches {self.monitor!r}, which training does not report")
        self.wait += 1
        if self.best is None or self.better(current, self.best):
            self.best, self.best_epoch, self.wait = float(current), epoch, 0
            self.best_weights = [np.array(w) for w in model.get_weights()]
            return False
        return self.wait >= self.patience and epoch > 0

    def state(self):
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}


def _variables(model):
    """Everything whose value a next epoch depends on: model variables (including the dropout
    seed-generator states, which `model.variables` lists), then the optimizer's."""
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    return list(model.variables) + list(model.optimizer.variables)


def _save(path, model, stopper, epoch, history, stopped):
    state = {"epoch": epoch, "history": history, "early_stopping": stopper.state(), "stopped": stopped}
    arrays = {f"v{i}": np.asarray(v) for i, v in enumerate(_variables(model))}
    arrays.update({f"b{i}": w for i, w in enumerate(stopper.best_weights or [])})
    buffer = io.BytesIO()
    np.savez(buffer, state=np.array(json.dumps(state)), **arrays)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, path)  # a kill mid-write leaves the previous backup whole


def _restore(path, model, stopper):
    """Load the backup into `model` and `stopper`; returns (next epoch, history, stopped early),
    or None when there is no backup or it does not fit this model."""
    if not path.is_file():
        return None
    variables = _variables(model)
    try:
        with np.load(path) as saved:
            state = json.loads(str(saved["state"]))
            values = [saved[f"v{i}"] for i in range(len(variables))]
            has_best = state["early_stopping"]["best"] is not None
            best = [saved[f"b{i}"] for i in range(len(model.get_weights()))] if has_best else None
            extra = f"v{len(variables)}" in saved
    except (OSError, ValueError, KeyError):
        return None
    if extra or any(v.shape != tuple(var.shape) for v, var in zip(values, variables)):
        return None
    for var, value in zip(variables, values):
        var.assign(value)
    es = state["early_stopping"]
    stopper.best, stopper.best_epoch, stopper.wait = es["best"], es["best_epoch"], es["wait"]
    stopper.best_weights = best
    return state["epoch"], state["history"], state["stopped"]


def fit(model, train, validation, settings, workdir, monitor="val_loss", mode="min", class_weight=None):
    """Train `model` (compiled) for settings["epochs"] epochs with early stopping after
    settings["patience"] epochs without improvement of `monitor`; return its history (every epoch,
    resumed or not). The best validation weights are restored.
    train: a function epoch -> tf.data.Dataset (exact resume), or a Dataset;
    class_weight: {class id: weight} for a single-output model, as Keras' fit takes it."""
    workdir = Path(workdir)
    epochs = settings["epochs"]
    stopper = _EarlyStopping(monitor, mode, settings["patience"])
    callbacks = [keras.callbacks.TensorBoard(str(workdir / "logs")), _Progress(epochs)]
    # One line per epoch when not on a terminal (logs, CI); live bars on a terminal.
    verbose = 1 if sys.stdout.isatty() else 2
    with owned(workdir), warnings.catch_warnings():
        # Length-bucketed datasets have no known size, so Keras finds each epoch's end by running out.
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        backup = workdir / BACKUP
        start, history, stop = _restore(backup, model, stopper) or (0, {}, False)
        if start:
            print(f"resuming from the backup in {workdir} after epoch {start}", flush=True)
        for epoch in range(start, start if stop else epochs):
            data = train(epoch) if callable(train) else train
            logs = model.fit(
                data,
                validation_data=validation,
                initial_epoch=epoch,
                epochs=epoch + 1,
                callbacks=callbacks,
                verbose=verbose,
                shuffle=False,
                class_weight=class_weight,
            ).history
            logs = {k: float(v[-1]) for k, v in logs.items()}
            for k, v in logs.items():
                history.setdefault(k, []).append(v)
            stop = stopper.update(epoch, logs, model)
            _save(backup, model, stopper, epoch + 1, history, stop)
            if stop:
                print(
                    f"early stopping after epoch {epoch + 1}: best {monitor} at epoch {stopper.best_epoch + 1}",
                    flush=True,
                )
                break
        if stopper.best_weights is not None:
            model.set_weights(stopper.best_weights)
        backup.unlink(missing_ok=True)
    return history
