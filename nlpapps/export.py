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
    import nlpapps.training  # noqa: F401  (registers the optimizer, training.Adam)

    return keras.models.load_model(Path(path) / "model.keras" if Path(path).is_dir() else path, safe_mode=True)


# Serving: the string work (standardizing, splitting, vocabulary lookups) stays TensorFlow ops, and the
# numeric part (embedding, recurrent loop, heads) runs compiled by XLA: one fused program in place of
# the thousands of small ops a recurrent loop runs per text, the same numbers to float rounding. XLA
# compiles once per input shape, so inputs reach it in a bounded set of shapes: rows in chunks of
# CHUNK_ROWS and token ids padded to a length bucket's edge (the padding mask makes padding change
# nothing). Each shape compiles on its first use, 1-3 s each on 2 shared cores.
CHUNK_ROWS = (1, 8, 32)  # a batch is padded up to the first that holds it, or cut into chunks of the last


def compiled(function, weights=()):
    """`function` compiled by XLA (once per input shape it meets). With `weights` (Keras variables),
    it computes with their values at this call as constants instead of reading the variables: a
    compiled program locks every variable it reads for as long as it runs, so the chunks of a large
    batch would run one after the other; on constants they run side by side on the cores (the text
    apps at batch 256: about 1.6x the texts/s on 2 cores). A call also passes only its inputs."""
    import keras
    import tensorflow as tf

    values = [(v, v.numpy()) for v in weights]
    if not values:
        return tf.function(function, jit_compile=True)

    # Not functools.wraps: AutoGraph would then convert the wrapped function's source without the scope.
    def frozen(*args, **kwargs):
        with keras.StatelessScope(state_mapping=[(v, tf.constant(value)) for v, value in values]):
            return function(*args, **kwargs)

    return tf.function(frozen, jit_compile=True)


def by_length(numeric, ids, edges):
    """`numeric`'s outputs (each with a row axis first) for every row of token ids[batch, time], in the
    input's order. A batch is padded to one of CHUNK_ROWS rows, or sorted by length and cut into
    chunks of the largest; each chunk is padded to the first of `edges` that holds its longest row
    (time <= edges[-1]). So at most len(CHUNK_ROWS) × len(edges) shapes reach the compiled
    `numeric`, and in a large batch a short text is not padded to the longest of the batch."""
    import tensorflow as tf

    ids = tf.cast(ids, tf.int32)
    edges, sizes = tf.constant(edges, tf.int32), tf.constant(CHUNK_ROWS, tf.int32)
    batch, width = tf.shape(ids)[0], tf.shape(ids)[1]
    rows = tf.gather(sizes, tf.minimum(tf.searchsorted(sizes, batch[None]), len(CHUNK_ROWS) - 1))[0]
    chunks = tf.maximum((batch + rows - 1) // rows, 1)  # one for an empty batch: outputs keep their shapes

    def edge_of(length):
        return tf.gather(edges, tf.searchsorted(edges, tf.maximum(length, 1)[None]))[0]

    def one_chunk():  # nothing to sort: every row is padded to the edge of the widest
        out = numeric(tf.pad(ids, [[0, rows - batch], [0, edge_of(width) - width]]))
        return tf.nest.map_structure(lambda t: t[:batch], out)

    def sorted_chunks():
        lengths = tf.math.count_nonzero(ids, axis=1, dtype=tf.int32)
        order = tf.argsort(lengths, stable=True)
        padded = tf.pad(tf.gather(ids, order), [[0, chunks * rows - batch], [0, edges[-1] - width]])
        longest = tf.reduce_max(
            tf.reshape(tf.pad(tf.gather(lengths, order), [[0, chunks * rows - batch]]), [chunks, rows]), 1
        )

        def chunk(i):
            return numeric(padded[i * rows : (i + 1) * rows, : edge_of(longest[i])])

        out = tf.map_fn(chunk, tf.range(chunks), fn_output_signature=spec)
        inverse = tf.math.invert_permutation(order)
        return tf.nest.map_structure(lambda t: tf.gather(tf.reshape(t, [-1, *t.shape[2:]]), inverse), out)

    traced = numeric.get_concrete_function(tf.TensorSpec([None, None], tf.int32)).structured_outputs
    spec = tf.nest.map_structure(lambda t: tf.TensorSpec([None, *t.shape[1:]], t.dtype), traced)
    return tf.cond(chunks == 1, one_chunk, sorted_chunks)


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
