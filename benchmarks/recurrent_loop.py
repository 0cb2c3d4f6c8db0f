"""Speed of the recurrent layers' loop: Keras' own SimpleRNN/LSTM/GRU against nlpapps.blocks.loops,
in the default sentiment model's shape (embedding 128 with a padding mask, 64 units, max pooling,
a dense head), on length-bucketed batches of random token ids, interleaved.

    python benchmarks/recurrent_loop.py [--cells gru,lstm,rnn] [--rounds 3] [--batches 40]

Prints, per cell and direction, the median seconds of a pass over the same batches, for a
compiled training step (forward, gradients, Adam; wall-clock and CPU time, real (non-padding)
tokens per second of each) and a compiled forward pass at batch 1 and 256, and the speed-up of the
lean loop. On a shared machine the CPU-time figures are the steadier ones.
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from nlpapps.blocks import loops  # noqa: E402

KERAS = {"rnn": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM, "gru": keras.layers.GRU}
LEAN = {"rnn": loops.SimpleRNN, "lstm": loops.LSTM, "gru": loops.GRU}


def bucketed_batches(rng, count, batch_size, vocab=8000):
    """Batches whose texts have similar lengths, as the sentiment pipeline's length buckets give them."""
    batches = []
    for _ in range(count):
        longest = int(rng.integers(8, 101))
        lengths = rng.integers(max(1, longest - 8), longest + 1, size=batch_size)
        ids = np.zeros((batch_size, longest), dtype="int32")
        for row, n in enumerate(lengths):
            ids[row, :n] = rng.integers(1, vocab, size=n)
        batches.append((tf.constant(ids), tf.constant(rng.integers(0, 2, size=(batch_size, 1)).astype("float32"))))
    return batches


def model(layer_class, bidirectional, seed=0):
    keras.utils.set_random_seed(seed)
    ids = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(8000, 128, mask_zero=True)(ids)
    recurrent = layer_class(64, return_sequences=True)
    if bidirectional:
        recurrent = keras.layers.Bidirectional(recurrent)
    x = recurrent(x)
    # Max over the kept steps, as the stack pools (padding steps never win).
    x = keras.ops.max(keras.ops.where(keras.ops.expand_dims(ids > 0, -1), x, -1e9), axis=1)
    return keras.Model(ids, keras.layers.Dense(1)(x))


def step_functions(net):
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(net.trainable_variables)
    loss_fn = keras.losses.BinaryCrossentropy(from_logits=True)

    @tf.function(reduce_retracing=True)
    def train(ids, labels):
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, net(ids, training=True))
        optimizer.apply_gradients(zip(tape.gradient(loss, net.trainable_variables), net.trainable_variables))
        return loss

    @tf.function(reduce_retracing=True)
    def predict(ids):
        return net(ids, training=False)

    return train, predict


def timed(fn, batches):
    """Wall-clock seconds of a pass, and the process's CPU seconds (all threads) for the train column."""
    began, began_cpu = time.perf_counter(), time.process_time()
    for batch in batches:
        fn(*batch)
    return time.perf_counter() - began, time.process_time() - began_cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", default="gru,lstm,rnn")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=40)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    train_batches = bucketed_batches(rng, args.batches, 64)
    tokens = sum(int(tf.reduce_sum(tf.cast(ids > 0, tf.int32))) for ids, _ in train_batches)
    one = [(ids[:1],) for ids, _ in bucketed_batches(rng, args.batches, 1)]
    big = [(ids,) for ids, _ in bucketed_batches(rng, max(2, args.batches // 8), 256)]
    print(f"{args.batches} training batches of 64 ({tokens} real tokens), {len(one)} of 1, {len(big)} of 256")
    print(
        f"{'cell':<5} {'dir':<3} {'loop':<5} {'train s':>8} {'tokens/s':>9} {'CPU s':>6} {'tokens/CPU s':>12} "
        f"{'batch 1 s':>9} {'batch 256 s':>11}"
    )
    for cell in args.cells.split(","):
        for bidirectional in (True, False):
            runs = {}
            for name, classes in (("keras", KERAS), ("lean", LEAN)):
                train, predict = step_functions(model(classes[cell], bidirectional))
                timed(train, train_batches), timed(predict, one), timed(predict, big)  # trace every shape
                runs[name] = (train, predict, {"train": [], "cpu": [], "one": [], "big": []})
            for r in range(args.rounds):
                for name in ("keras", "lean") if r % 2 == 0 else ("lean", "keras"):  # neither always first
                    train, predict, seconds = runs[name]
                    wall, cpu = timed(train, train_batches)
                    seconds["train"].append(wall)
                    seconds["cpu"].append(cpu)
                    seconds["one"].append(timed(predict, one)[0])
                    seconds["big"].append(timed(predict, big)[0])
            medians = {name: {k: statistics.median(v) for k, v in runs[name][2].items()} for name in runs}
            for name, m in medians.items():
                print(
                    f"{cell:<5} {'bi' if bidirectional else 'uni':<3} {name:<5} {m['train']:>8.2f} "
                    f"{tokens / m['train']:>9.0f} {m['cpu']:>6.2f} {tokens / m['cpu']:>12.0f} "
                    f"{m['one']:>9.3f} {m['big']:>11.3f}"
                )
            k, lean = medians["keras"], medians["lean"]
            print(
                f"{'':<9} speed-up {k['train'] / lean['train']:>8.2f}x {'':>9} {k['cpu'] / lean['cpu']:>5.2f}x "
                f"{'':>12} {k['one'] / lean['one']:>8.2f}x {k['big'] / lean['big']:>10.2f}x",
                flush=True,
            )


if __name__ == "__main__":
    main()
