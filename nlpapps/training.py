"""The one fit loop every task uses, on one device, several (MirroredStrategy) or several machines
(MultiWorkerMirroredStrategy) alike: an epoch loop of our own around compiled steps that run the
model's compiled train_step / test_step on every device (Keras 3.15's `fit` fails under
MultiWorkerMirroredStrategy, keras-team/keras#20585), with Keras' progress output and TensorBoard
logs, validation each epoch, early stopping, and a resume backup that makes a killed run, run again,
end exactly as an unbroken one.

Exact resume. After every epoch the run folder gets one backup file holding every model variable
(weights and the dropout layers' seed-generator states), the optimizer's variables (step count,
moments), the early-stopping state (best value, epochs without improvement, best weights) and the
history so far, so epoch k of a resumed run starts from exactly what epoch k of an unbroken run
started from. The training data must also be the same:
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
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from nlpapps.errors import UserError

BACKUP = "backup.npz"


@keras.saving.register_keras_serializable(package="nlpapps")
class Adam(keras.optimizers.Adam):
    """Keras' Adam, each variable's update in TensorFlow's fused Adam kernel: the same arithmetic
    (moments, bias correction, epsilon outside the square root) in one pass over the variable and its
    moments instead of about ten. For a text model's embedding, a large variable of which a small
    batch touches a few rows, those passes were about a third of the training time. Where an id
    repeats in a batch, its second moment takes the square of its summed gradient, as Adam and
    PyTorch do (Keras squares each occurrence's gradient apart)."""

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad:
            return super().update_step(gradient, variable, learning_rate)

        def constant(value):
            return tf.cast(value, variable.dtype)

        power = constant(self.iterations + 1)
        i = self._get_variable_index(variable)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle,
            m=self._momentums[i].handle,
            v=self._velocities[i].handle,
            beta1_power=constant(self.beta_1) ** power,
            beta2_power=constant(self.beta_2) ** power,
            lr=constant(learning_rate),
            beta1=constant(self.beta_1),
            beta2=constant(self.beta_2),
            epsilon=constant(self.epsilon),
            grad=tf.convert_to_tensor(constant(gradient)),  # an embedding's sparse gradient, made dense
        )


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


def _checkpoint(path, model, stopper, epoch, history, stopped):
    """Write the backup that `_restore` reads: the variables, the early stopping state and the history."""
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


# ------------------------------------------------------------------------------ devices and workers

CPU_DEVICES = "NLPAPPS_CPU_DEVICES"  # split the CPU into this many logical devices (to try `mirrored`)
WORKER_TIMEOUT = "NLPAPPS_WORKER_TIMEOUT"  # seconds to wait for the other workers (default 120)
_strategies = {}


def strategy(recipe):
    """The tf.distribute strategy of the recipe's train.strategy, created once per process; the task
    builds its model and optimizer under `strategy(recipe).scope()`.
    default: one device; mirrored: every local GPU (else every logical CPU device) in sync;
    multi-worker: the machines that the TF_CONFIG environment variable names, each with its devices.
    Call it before any other TensorFlow work: logical devices and the cluster are fixed at start."""

    name = recipe["train"]["strategy"]
    _split_cpu(tf)
    if name == "default":
        return tf.distribute.get_strategy()
    if name not in _strategies:
        _strategies[name] = _mirrored(tf) if name == "mirrored" else _multi_worker(tf)
    return _strategies[name]


def _split_cpu(tf):
    wanted = os.environ.get(CPU_DEVICES, "")
    if not wanted:
        return
    if not wanted.isdigit() or int(wanted) < 1:
        raise UserError(f"{CPU_DEVICES}={wanted!r}: must be a whole number of devices, 1 or more")
    cpu = tf.config.list_physical_devices("CPU")[0]
    if len(tf.config.get_logical_device_configuration(cpu) or [None]) == int(wanted):
        return
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * int(wanted))
    except RuntimeError:
        raise UserError(f"{CPU_DEVICES} must be set before TensorFlow starts (it had started)") from None


def _mirrored(tf):
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy([d.name for d in devices])


def _multi_worker(tf):
    """MultiWorkerMirroredStrategy from TF_CONFIG. Its start waits until every worker has joined,
    by default for an hour: the cluster's coordination service is configured here as the strategy
    would configure it, with NLPAPPS_WORKER_TIMEOUT seconds to form. The same limit bounds each
    collective step later, so a worker that vanishes mid-run is reported too."""
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
    from tensorflow.python.eager import context

    try:
        config = json.loads(os.environ.get("TF_CONFIG") or "null")
        jobs = {job: list(config["cluster"][job]) for job in ("chief", "worker") if job in config["cluster"]}
        task = f"{config['task']['type']} {int(config['task']['index'])}"
    except (ValueError, TypeError, KeyError, AttributeError):
        raise UserError(
            "train.strategy = multi-worker needs TF_CONFIG, e.g. "
            '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}'
        ) from None
    timeout = _worker_timeout()
    context.context().configure_coordination_service(
        service_type="standalone",
        service_leader=f"/job:{'chief' if 'chief' in jobs else 'worker'}/replica:0/task:0",
        coordinated_jobs=[coordination_config_pb2.CoordinatedJob(name=j, num_tasks=len(a)) for j, a in jobs.items()],
        cluster_register_timeout_in_ms=int(timeout * 1000),
    )
    context.context().coordination_service.cluster_register_with_barrier = True  # the limit applies to all
    try:
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    except (tf.errors.DeadlineExceededError, tf.errors.UnavailableError) as e:
        workers = ", ".join(a for addresses in jobs.values() for a in addresses)
        raise WorkersUnreachable(
            f"multi-worker training as {task} of {workers}: not every worker joined within {timeout:g} s "
            f"({type(e).__name__}); start each worker that TF_CONFIG names, or raise {WORKER_TIMEOUT}"
        ) from None


class WorkersUnreachable(UserError):
    """The cluster never formed. TensorFlow's half-started cluster would log its own errors while
    the process shuts down: the command line ends the process at once after saying so."""

    exit_now = True


def _worker_timeout():
    value = os.environ.get(WORKER_TIMEOUT, "120")
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise UserError(f"{WORKER_TIMEOUT}={value!r}: must be a positive number of seconds")
    return seconds


def is_chief(strategy=None):
    """Whether this process writes what a run leaves behind (backup, logs, export): always, except
    in a multi-worker cluster, where only the chief does (the "chief" task, else worker 0)."""
    strategy = strategy or _strategies.get("multi-worker")
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or resolver.task_type is None:
        return True
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in resolver.cluster_spec().jobs


def worker_label(strategy=None):
    """'worker 1 of 2' in a multi-worker cluster, '' otherwise."""
    strategy = strategy or _strategies.get("multi-worker")
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or resolver.task_type is None:
        return ""
    total = sum(resolver.cluster_spec().num_tasks(job) for job in resolver.cluster_spec().jobs)
    return f"{resolver.task_type} {resolver.task_id} of {total}"


# ------------------------------------------------------------------------------------ the fit loop


def fit(
    model, train, validation, settings, workdir, monitor="val_loss", mode="min", class_weight=None, restore_best=True
):
    """Train `model` (compiled, under its strategy's scope) for settings["epochs"] epochs with early
    stopping after settings["patience"] epochs without improvement of `monitor`; return its history
    (every epoch, resumed or not). The best validation weights are restored.
    train: a function epoch -> tf.data.Dataset (exact resume), or a Dataset; batches are global:
    each worker and device takes its share of every batch;
    class_weight: {class id: weight} for a single-output model, as Keras' fit takes it;
    restore_best=False keeps the last epoch's weights instead (a fixed number of epochs)."""
    strategy = model.distribute_strategy
    workdir = Path(workdir)
    chief = is_chief(strategy)
    # Every worker runs the same steps; only the chief keeps a backup and logs. The others write
    # theirs to a scratch folder that is removed at the end (MultiWorkerMirroredStrategy's pattern).
    own = workdir if chief else Path(tempfile.mkdtemp(prefix="nlpapps-worker-"))
    epochs = settings["epochs"]
    stopper = _EarlyStopping(monitor, mode, settings["patience"])
    callbacks = _progress(model, own, epochs)
    train_step, test_step = _steps(model, strategy, validation)
    _announce(strategy, settings["batch_size"])
    try:
        with owned(own):
            with strategy.scope():
                # A resumed worker reads the chief's backup (on a shared folder, or a copy).
                start, history, stop = _restore(workdir / BACKUP, model, stopper) or (0, {}, False)
            if start:
                print(f"resuming from the backup in {workdir} after epoch {start}", flush=True)
            callbacks.on_train_begin()
            for epoch in range(start, start if stop else epochs):
                data = train(epoch) if callable(train) else train
                logs = _epoch(
                    model, strategy, callbacks, epoch, _weighted(data, class_weight), validation, train_step, test_step
                )
                for k, v in logs.items():
                    history.setdefault(k, []).append(v)
                stop = stopper.update(epoch, logs, model)
                _checkpoint(own / BACKUP, model, stopper, epoch + 1, history, stop)
                if stop:
                    print(
                        f"early stopping after epoch {epoch + 1}: best {monitor} at epoch {stopper.best_epoch + 1}",
                        flush=True,
                    )
                    break
            callbacks.on_train_end()
            if restore_best and stopper.best_weights is not None:
                model.set_weights(stopper.best_weights)
            (own / BACKUP).unlink(missing_ok=True)
    except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.CancelledError) as e:
        if not worker_label(strategy):
            raise
        raise UserError(f"training across workers stopped: {e.message.splitlines()[0]}") from None
    finally:
        if not chief:
            shutil.rmtree(own, ignore_errors=True)
    if worker_label(strategy):  # workers in sync end with the same weights: this line lets one check
        print(f"{worker_label(strategy)}: final weights {weights_digest(model)}", flush=True)
    return history


def _announce(strategy, batch_size):
    """Say how a batch is shared when several devices train in sync."""
    if strategy.num_replicas_in_sync > 1:
        label = worker_label(strategy)
        print(
            f"training on {strategy.num_replicas_in_sync} devices in sync{f' ({label})' if label else ''}; "
            f"each batch of {batch_size} is split among them",
            flush=True,
        )


def _progress(model, own, epochs):
    """Keras' progress bar and TensorBoard logs (in own/logs): one line per epoch when not on a
    terminal (logs, CI), live bars on a terminal."""
    return keras.callbacks.CallbackList(
        [keras.callbacks.ProgbarLogger(), keras.callbacks.TensorBoard(str(own / "logs"))],
        model=model,
        verbose=1 if sys.stdout.isatty() else 2,
        epochs=epochs,
        steps=None,
    )


def evaluate(model, data):
    """The model's compiled metrics on `data` (batches), computed as validation computes them: its
    test_step on every device and worker, summed. Keras' `evaluate` fails under
    MultiWorkerMirroredStrategy as `fit` does; this works under every strategy."""
    strategy = model.distribute_strategy
    model.reset_metrics()
    _each_batch(strategy, data, _compiled(strategy, model.test_step), lambda i: None, lambda i: None)
    return _results(model)


def _steps(model, strategy, validation):
    """The compiled training and validation steps. Each device runs the model's own train_step /
    test_step on its share of the batch: the task's compiled losses, loss weights, metrics and sample
    weights, the loss scaled by the number of devices in sync so that the summed gradients are those
    of the global batch."""
    with strategy.scope():
        # What Keras' fit does before its first step, from the data's shapes alone: build the compiled
        # losses and metrics and the optimizer, so that no variable is created inside a step.
        model._symbolic_build(data_batch=validation.element_spec)
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)

    return _compiled(strategy, model.train_step), _compiled(strategy, model.test_step)


def _compiled(strategy, step):
    """`step` (the model's train_step or test_step) on every device, as a tf.function of a dataset:
    traced once per kind of dataset, for its element spec (batch and length dimensions unknown),
    so one trace serves every batch of every epoch."""

    traced = {}

    def for_data(data):
        key = repr(data.element_spec)
        if key not in traced:
            # autograph off, as in Keras' fit: the steps hold no Python control flow on tensors.
            traced[key] = tf.function(
                lambda batch: strategy.run(step, args=(batch,)), input_signature=[data.element_spec], autograph=False
            )
        return traced[key]

    return for_data


def _epoch(model, strategy, callbacks, epoch, data, validation, train_step, test_step):
    """One epoch of training, then validation; returns its logs as Keras' fit names them."""
    model.reset_metrics()
    callbacks.on_epoch_begin(epoch)
    _each_batch(strategy, data, train_step, callbacks.on_train_batch_begin, callbacks.on_train_batch_end)
    logs = _results(model)
    model.reset_metrics()
    callbacks.on_test_begin()
    _each_batch(strategy, validation, test_step, callbacks.on_test_batch_begin, callbacks.on_test_batch_end)
    val = _results(model)
    callbacks.on_test_end(val)
    logs.update({f"val_{k}": v for k, v in val.items()})
    callbacks.on_epoch_end(epoch, logs)
    return logs


def _each_batch(strategy, data, step, on_begin, on_end):
    """Run the compiled `step` on every batch of `data`, each worker and device on its share."""
    data = _distributed(strategy, data)
    run = step(data)
    for i, batch in enumerate(data):
        on_begin(i)
        run(batch)
        on_end(i)


def _results(model):
    """The metrics of the steps since the last reset, summed over every device and worker."""
    return {k: float(v) for k, v in model.get_metrics_result().items()}


def _distributed(strategy, data):
    """Each worker takes its share of every global batch (sharding by data: any dataset, streamed or
    in memory, gives every worker the same number of steps), each device its share of that."""

    if strategy.num_replicas_in_sync == 1:
        return data
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return strategy.experimental_distribute_dataset(data.with_options(options))


def _weighted(data, class_weight):
    """Batches (x, y) → (x, y, the weight of each example's class), as Keras' fit applies class_weight."""
    if not class_weight:
        return data

    table = tf.constant([class_weight.get(i, 1.0) for i in range(max(class_weight) + 1)], tf.float32)

    def add(x, y):
        labels = tf.reshape(tf.cast(tf.nest.flatten(y)[0], tf.int32), [-1])
        return x, y, tf.gather(table, labels)

    return data.map(add, num_parallel_calls=tf.data.AUTOTUNE)


def weights_digest(model):
    """A short fingerprint of the model's weights (identical weights, identical digest)."""
    digest = hashlib.sha256()
    for w in model.get_weights():
        digest.update(np.ascontiguousarray(w).tobytes())
    return digest.hexdigest()[:16]
