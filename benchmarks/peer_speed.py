"""nlpapps against PyTorch, side by side: each app's default model and a PyTorch twin of it (the same
architecture, started from the same weights), fed the same token ids in the same length-bucketed batches.

    python benchmarks/peer_speed.py [--apps sentiment,classify,forecast,translate] [--cells gru,lstm]
        [--directions bi,uni] [--epochs 2] [--steps 0] [--rounds 3] [--threads N]
        [--models DIR] [--quick]

Needs PyTorch (`pip install -e ".[bench]"`). For each of sentiment and classify:
- training: for every cell and direction asked for, the app's model (its recipe; the cell and direction
  changed) trained through the project's compiled train_step, as `nlpapps run` trains, and the twin
  (nn.Embedding, nn.GRU/LSTM/RNN over `pack_padded_sequence`, max pooling over the real steps, the same
  heads, losses and Adam) on the epochs' batches of the app's own pipeline; real (non-padding) tokens/s
  of the fastest epoch after the first (which also traces the graph), and the test accuracy after training.
- serving: texts/s at batch 1 and 256, strings in, medians of repeated calls: the export's
  serving_default (of a one-epoch `run` of the default recipe, or the newest under --models) against the
  twin with the export's weights, a Python dict tokenizer of the same vocabulary and standardization,
  under `torch.inference_mode()`; the share of test texts both tokenize alike and the largest difference
  of their probabilities are printed.
forecast: milliseconds per `step` (one reading in, state fed back) at batch 1, the export's signature
against a GRUCell/LSTMCell stack twin with its weights (one member: `model.ensemble=1`). translate:
sentences/s of the export's greedy and beam signatures at batch 1 (the newest export under --models),
without a twin: that would be a second encoder-decoder with attention and beam search to write.
Every measurement runs --rounds times, alternating which framework goes first. Timings are wall-clock:
say what else ran on the machine (on a busy one, --threads 1: threads that wait on each other slow down
out of proportion, PyTorch's OpenMP ones most).
"""

import argparse
import contextlib
import io
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

try:
    import torch
    from torch import nn
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
except ImportError:
    sys.exit('peer_speed.py compares with PyTorch, which is not installed: pip install -e ".[bench]"')

import forecast_speed  # noqa: E402  (benchmarks/, this script's folder)
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
import translate_speed  # noqa: E402

from nlpapps import evaluation, export, recipes, tasks, training  # noqa: E402
from nlpapps.data import series, text  # noqa: E402
from nlpapps.errors import UserError  # noqa: E402
from nlpapps.tasks import classify, sentiment  # noqa: E402
from nlpapps.tasks.text import data as text_data  # noqa: E402

TRANSLATE_NOTE = "no twin: a PyTorch encoder-decoder with attention and beam search is a second decoder to write"

# ------------------------------------------------------------------------------- the twin of a text model

FRAMEWORKS = ("nlpapps", "PyTorch")
TORCH_RNN = {"gru": nn.GRU, "lstm": nn.LSTM, "rnn": nn.RNN}


class TextTwin(nn.Module):
    """The many-to-one encoder (embedding, spatial dropout, recurrent layers, dropout, max pooling)
    and the task's dense heads: {name: (width, activation)}, as the Keras model names them."""

    def __init__(self, vocab_size, m, heads):
        super().__init__()
        if m["cell"] not in TORCH_RNN or m["residual"] or m["pooling"] != "max":
            raise SystemExit(f"no twin for cell {m['cell']}, residual {m['residual']}, pooling {m['pooling']}")
        self.embedding = nn.Embedding(vocab_size, m["embedding_dim"], padding_idx=0)
        self.embedding_dropout = nn.Dropout1d(m["embedding_dropout"])  # whole channels, as SpatialDropout1D
        self.rnn = TORCH_RNN[m["cell"]](
            m["embedding_dim"],
            m["units"],
            num_layers=m["depth"],
            bidirectional=m["bidirectional"],
            dropout=m["dropout"] if m["depth"] > 1 else 0.0,
            batch_first=True,
        )
        self.dropout = nn.Dropout(m["dropout"])
        width = m["units"] * (2 if m["bidirectional"] else 1)
        self.heads = nn.ModuleDict({name: nn.Linear(width, size) for name, (size, _) in heads.items()})
        self.activations = {name: activation for name, (_, activation) in heads.items()}

    def forward(self, ids, lengths):
        x = self.embedding_dropout(self.embedding(ids).transpose(1, 2)).transpose(1, 2)
        packed = pack_padded_sequence(x, lengths.clamp(min=1), batch_first=True, enforce_sorted=False)
        y, _ = pad_packed_sequence(self.rnn(packed)[0], batch_first=True, total_length=ids.shape[1])
        y = self.dropout(y).masked_fill((ids == 0)[:, :, None], -1e9)
        pooled = y.max(dim=1).values
        return {name: head(pooled) for name, head in self.heads.items()}  # logits: the losses take them

    def outputs(self, logits):
        """What the Keras model outputs: probabilities, tanh scores."""
        act = {"softmax": lambda z: z.softmax(-1), "tanh": torch.tanh}
        return {name: act[self.activations[name]](z) for name, z in logits.items()}

    def copy_from(self, model):
        """Take every weight of the Keras model `model` (built by the app)."""
        with torch.no_grad():
            self.embedding.weight.copy_(_t(model.get_layer("embedding").embeddings))
            stack = model.get_layer("encoder")
            for k, layer in enumerate(stack.rnn_layers):
                directions = [layer.forward_layer, layer.backward_layer] if stack.bidirectional else [layer]
                for suffix, keras_layer in zip(("", "_reverse"), directions):
                    w_ih, w_hh, b_ih, b_hh = _gates(stack.cell, keras_layer.cell)
                    for name, value in (("weight_ih", w_ih), ("weight_hh", w_hh), ("bias_ih", b_ih), ("bias_hh", b_hh)):
                        getattr(self.rnn, f"{name}_l{k}{suffix}").copy_(value)
            for name, head in self.heads.items():
                dense = model.get_layer(name)
                head.weight.copy_(_t(dense.kernel).T)
                head.bias.copy_(_t(dense.bias))
        return self


def _t(variable):
    return torch.from_numpy(np.asarray(variable.numpy(), dtype=np.float32))


def _gates(cell_type, cell):
    """A Keras cell's weights in PyTorch's layout: (w_ih, w_hh, b_ih, b_hh). Keras orders the GRU's
    gates z, r, h (PyTorch r, z, n); its LSTM i, f, c, o as PyTorch, with one bias."""
    kernel, recurrent = _t(cell.kernel), _t(cell.recurrent_kernel)
    if cell_type == "gru":  # reset_after: an input bias and a recurrent bias, as PyTorch has
        u = cell.units
        order = torch.cat([torch.arange(u, 2 * u), torch.arange(u), torch.arange(2 * u, 3 * u)])
        bias = _t(cell.bias)
        return kernel[:, order].T, recurrent[:, order].T, bias[0, order], bias[1, order]
    bias = _t(cell.bias)
    return kernel.T, recurrent.T, bias, torch.zeros_like(bias)


def heads_of(model):
    """The Keras model's dense heads: {layer name: (width, activation)}."""
    out = {}
    for name in ("polarity", "score", "softmax"):
        with contextlib.suppress(ValueError):
            dense = model.get_layer(name)
            out[name] = (dense.units, dense.activation.__name__)
    return out


# ------------------------------------------------------------------------------------------- the apps


# The PyTorch twin has a plain embedding: the apps run without pretrained vectors or a lexicon prior.
PLAIN = ('model.vectors="none"', 'model.lexicon="none"')


class App:
    """One text app's data, targets, model and losses, as its run() makes them (with PLAIN)."""

    def __init__(self, name, overrides=()):
        self.name = name
        self.recipe = recipes.load(name, [*PLAIN[: 1 + (name == "sentiment")], *overrides])
        self.data = text_data.prepare(self.recipe, lambda *_: None)
        self.vocab_size = self.data.vectorizer.vocabulary_size()
        self.class_weight = None
        if name == "sentiment":  # the shipped data is scored: polarity from the score's band, as run() does
            values, band = self.data.labels("train"), self.recipe["data"]["neutral_band"]
            self.scale = float(np.ceil(max(abs(float(v)) for v in values))) or 1.0
            self.classes = sorted({str(sentiment.polarity(float(v), band)) for v in values})
        else:
            self.classes, _ = text_data.classes_of(self.data, name, lambda *_: None)
            counts = self.data.labels("train")
            self.class_weight = classify.class_weights(
                [counts[c] for c in self.classes], self.recipe["train"]["class_weights"]
            )
        self.table = text_data.lookup(self.classes)

    def targets(self, columns):
        if self.name == "classify":
            y = self.table.lookup(columns["target"])
            return y, y >= 0
        score = tf.strings.to_number(columns["target"], tf.float32)
        y = self.table.lookup(sentiment.polarity_tf(score, self.recipe["data"]["neutral_band"]))
        return {"polarity": y, "score": (score / self.scale)[:, None]}, y >= 0

    def build(self, m):
        t = self.recipe["train"]
        if self.name == "sentiment":
            return sentiment.build(self.vocab_size, self.classes, True, m, t)
        return classify.build(self.vocab_size, len(self.classes), m, t["learning_rate"])

    def batches(self, split, epoch=None):
        """The split's batches as the app makes them (for training: epoch `epoch`'s order, class weights)."""
        t, training_split = self.recipe["train"], split == "train"
        examples = self.data.examples(split, self.targets).map(lambda x, y, extras: (x, y))
        ds = text.batches(
            examples,
            batch_size=t["batch_size"] if training_split else 256,
            shuffle=min(t["shuffle_buffer"], self.data.size(split)) if training_split else 0,
            seed=t["seed"],
            max_length=self.recipe["text"]["max_tokens"],
            epoch=epoch,
        )
        return training._weighted(ds, self.class_weight) if training_split else ds

    def loss(self, logits, y, weights=None):
        """The Keras model's compiled loss, in PyTorch."""
        if self.name == "sentiment":
            polarity = nn.functional.cross_entropy(logits["polarity"], y["polarity"])
            score = nn.functional.mse_loss(torch.tanh(logits["score"]), y["score"])
            return polarity + self.recipe["train"]["score_weight"] * score
        losses = nn.functional.cross_entropy(logits["softmax"], y, reduction="none")
        return (losses * weights).mean() if weights is not None else losses.mean()

    def right(self, outputs, y):
        """Correct test predictions in a batch: the score's band for sentiment (its headline accuracy),
        the most likely class for classify."""
        if self.name == "classify":
            return int((outputs["probabilities"].argmax(-1) == y).sum())
        band = self.recipe["data"]["neutral_band"]
        predicted = sentiment.polarity(outputs["score"][:, 0] * self.scale, band)
        return int((predicted == sentiment.polarity(y["score"][:, 0] * self.scale, band)).sum())


def as_torch(batch):
    """A batch of tensors as PyTorch's (integers as int64: what its embedding and losses take)."""

    def convert(v):
        v = np.array(v)
        return torch.from_numpy(v.astype(np.int64) if v.dtype.kind == "i" else v)

    return tuple(tf.nest.map_structure(convert, batch))


def keras_training(model, app, epochs, steps):
    """Seconds and real tokens of each epoch, through the compiled train_step that `nlpapps run` uses."""
    first = app.batches("train", 0)
    train_step = training._steps(model, tf.distribute.get_strategy(), app.batches("validation"))[0](first)
    out = []
    for epoch in range(epochs):
        batches = list(app.batches("train", epoch).take(steps or -1))
        start = time.perf_counter()
        for batch in batches:
            train_step(batch)
        out.append((time.perf_counter() - start, sum(int(tf.math.count_nonzero(b[0])) for b in batches)))
    return out


def torch_training(twin, app, epochs, steps):
    """The same for the twin: the same batches, the same losses, Adam with Keras' rate and epsilon."""
    optimizer = torch.optim.Adam(twin.parameters(), lr=app.recipe["train"]["learning_rate"], eps=1e-7)
    twin.train()
    out = []
    for epoch in range(epochs):
        batches = [as_torch(b) for b in app.batches("train", epoch).take(steps or -1)]
        start = time.perf_counter()
        for x, y, *weights in batches:
            optimizer.zero_grad()
            loss = app.loss(twin(x, (x != 0).sum(1)), y, *weights)
            loss.backward()
            optimizer.step()
        out.append((time.perf_counter() - start, sum(int((b[0] != 0).sum()) for b in batches)))
    return out


def keras_accuracy(model, app):
    predict = tf.function(lambda x: model(x, training=False), input_signature=[tf.TensorSpec([None, None], tf.int32)])
    right = total = 0
    for x, y in app.batches("test").as_numpy_iterator():
        out = predict(x)
        right += app.right(tf.nest.map_structure(np.asarray, out), y)
        total += len(x)
    return right / total


def torch_accuracy(twin, app):
    twin.eval()
    right = total = 0
    with torch.inference_mode():
        for x, y in app.batches("test").as_numpy_iterator():
            xt = torch.from_numpy(x.astype(np.int64))
            out = twin.outputs(twin(xt, (xt != 0).sum(1)))
            out = {"probabilities": out["softmax"]} if app.name == "classify" else out
            right += app.right({k: v.numpy() for k, v in out.items()}, y)
            total += len(x)
    return right / total


def training_rows(app, cells, directions, epochs, steps, rounds, table):
    for cell in cells:
        for direction in directions:
            m = {**app.recipe["model"], "cell": cell, "bidirectional": direction == "bi"}
            label = f"{app.name} training, {direction}{cell.upper()}, real tokens/s (test accuracy)"
            speeds, accuracies = {k: [] for k in FRAMEWORKS}, {k: [] for k in FRAMEWORKS}
            for r in range(rounds):
                training.seed_everything(app.recipe["train"]["seed"] + r)
                model = app.build(m)
                twin = TextTwin(app.vocab_size, m, heads_of(model)).copy_from(model)  # the same start
                line = []
                for name in FRAMEWORKS if r % 2 == 0 else FRAMEWORKS[::-1]:
                    if name == "nlpapps":
                        per_epoch, accuracy = keras_training(model, app, epochs, steps), keras_accuracy(model, app)
                    else:
                        per_epoch, accuracy = torch_training(twin, app, epochs, steps), torch_accuracy(twin, app)
                    # The first epoch also traces (and warms up) unless it is the only one.
                    speeds[name].append(max(tokens / seconds for seconds, tokens in per_epoch[1:] or per_epoch))
                    accuracies[name].append(accuracy)
                    epochs_s = " ".join(f"{s:.1f}" for s, _ in per_epoch)
                    line.append(f"{name} {speeds[name][-1]:,.0f} ({accuracy:.3f}), epochs {epochs_s} s")
                print(f"round {r + 1}  {label}: " + "; ".join(line), flush=True)
            table.add(label, speeds, "{:,.0f}", accuracies)


# -------------------------------------------------------------------------------------------- serving


class DictTokenizer:
    """The export's text standardization and vocabulary in plain Python: lower-case, every character
    that is not a letter, a digit, a space or an apostrophe its own token, split on spaces, word
    n-grams after the words, unknown tokens 1, cut to max_tokens."""

    PUNCTUATION = re.compile(r"([^\w\s']|_)")

    def __init__(self, vocabulary, ngrams, max_tokens):
        self.ids = {token: i for i, token in enumerate(vocabulary)}
        self.ngrams, self.max_tokens = ngrams, max_tokens

    def __call__(self, raw):
        words = self.PUNCTUATION.sub(r" \1 ", raw.lower()).split()
        tokens = list(words)
        for n in range(2, self.ngrams + 1):
            tokens += [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]
        return [self.ids.get(t, 1) for t in tokens[: self.max_tokens]]


def export_of(name, models, overrides=()):
    """The newest export of the app `name` under `models`, or one made now by its run() (one epoch:
    the speed of serving does not depend on how well the weights are trained)."""
    with contextlib.suppress(UserError):
        return export.latest(models, name)
    print(f"training {name} for one epoch to export it (or pass --models with an export)", flush=True)
    with contextlib.redirect_stdout(io.StringIO()):
        recipe = recipes.load(name, ["train.epochs=1", *overrides])
        return tasks.get(name).run(recipe, models, log=lambda *_: None)


def median_rate(call, chunks, repeats):
    """Items per second of the median call over `repeats` passes over the chunks, after a warm-up call."""
    call(chunks[0])
    seconds = []
    for _ in range(repeats):
        for chunk in chunks:
            start = time.perf_counter()
            call(chunk)
            seconds.append((time.perf_counter() - start) / len(chunk))
    return 1 / statistics.median(seconds)


def serving_rows(app, models, rounds, quick, table):
    plain = list(PLAIN[: 1 + (app.name == "sentiment")])
    path = export_of(app.name, models, [*plain, "train.steps_per_epoch=5"] if quick else plain)
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    end_to_end = export.load_keras(path)
    vectorizer = next(layer for layer in end_to_end.layers if isinstance(layer, keras.layers.TextVectorization))
    model = end_to_end.get_layer(app.name)
    m, t = app.recipe["model"], app.recipe["text"]
    twin = TextTwin(app.vocab_size, m, heads_of(model)).copy_from(model).eval()
    tokenize = DictTokenizer(vectorizer.get_vocabulary(), t["ngrams"], t["max_tokens"])
    classes, band = np.array(app.classes), app.recipe["data"].get("neutral_band", 0.0)

    def torch_serve(texts):
        ids = [tokenize(s) for s in texts]
        x = torch.zeros(len(ids), max(1, *map(len, ids)), dtype=torch.long)
        for i, row in enumerate(ids):
            x[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        with torch.inference_mode():
            out = twin.outputs(twin(x, (x != 0).sum(1)))
        if app.name == "classify":
            p = out["softmax"].numpy()
            return {"label": classes[p.argmax(-1)], "probabilities": p}
        score = out["score"][:, 0].numpy() * app.scale
        return {"label": sentiment.polarity(score, band), "score": score, "probabilities": out["polarity"].numpy()}

    texts = [str(s) for batch in app.data.source.batches(2) for s in batch[app.data.source.names.index("text")]]
    expected = text.token_ids(vectorizer, texts, t["max_tokens"]).to_list()
    same = np.mean([tokenize(s) == e for s, e in zip(texts, expected)])
    chunk = [texts[i : i + 256] for i in range(0, len(texts), 256)]
    difference = max(
        float(np.abs(serve(text=tf.constant(c))["probabilities"].numpy() - torch_serve(c)["probabilities"]).max())
        for c in chunk
    )
    print(
        f"{path}: the dict tokenizer gives the export's token ids for {same:.1%} of {len(texts)} test texts; "
        f"largest difference of the probabilities, export against twin: {difference:.1e}",
        flush=True,
    )
    calls = {"nlpapps": lambda c: serve(text=tf.constant(c)), "PyTorch": torch_serve}
    for batch, count, repeats in ((1, 30 if quick else 400, 1), (256, 1 if quick else 7, 1 if quick else 3)):
        chunks = [texts[(i * batch) % len(texts) :][:batch] for i in range(count)]
        label = f"{app.name} serving, texts/s, batch {batch} (strings in), median"
        rates = {name: [] for name in FRAMEWORKS}
        for r in range(rounds):
            for name in FRAMEWORKS if r % 2 == 0 else FRAMEWORKS[::-1]:
                rates[name].append(median_rate(calls[name], chunks, repeats))
            print(f"round {r + 1}  {label}: " + "; ".join(f"{k} {v[-1]:,.0f}" for k, v in rates.items()), flush=True)
        table.add(label, rates, "{:,.0f}")


# ------------------------------------------------------------------------------ forecast and translate


class StepTwin(nn.Module):
    """The forecast's one-reading step: carry forward, encode, the cells, the heads; the export's weights."""

    def __init__(self, model):
        super().__init__()
        encode, stack, top = model.get_layer("encode"), model.get_layer("stack"), model.get_layer("heads")
        if any(layer.name == "stack_2" for layer in model.layers):
            raise SystemExit("the step twin has one member: export the forecast with --set model.ensemble=1")
        c = encode.get_config()
        if stack.cell not in ("gru", "lstm") or stack.residual:
            raise SystemExit(f"no step twin for cell {stack.cell} (residual {stack.residual})")
        self.angles = [i for i, a in enumerate(c["angles"]) if a]
        self.events = torch.tensor([i for i, _ in c["events"]], dtype=torch.long)
        self.thresholds = torch.tensor([th for _, th in c["events"]])
        self.periods = torch.tensor([series.PERIODS[p] for p in c["periods"]], dtype=torch.float64)
        self.order = torch.tensor(encode._order())
        self.mean, self.std = torch.tensor(c["mean"]), torch.tensor(c["std"])
        self.clip = series.CLIP
        cell = nn.GRUCell if stack.cell == "gru" else nn.LSTMCell
        self.cells = nn.ModuleList()
        for layer in stack.rnn_layers:
            w_ih, w_hh, b_ih, b_hh = _gates(stack.cell, layer.cell)
            twin = cell(w_ih.shape[1], stack.units)
            with torch.no_grad():
                for name, value in (("weight_ih", w_ih), ("weight_hh", w_hh), ("bias_ih", b_ih), ("bias_hh", b_hh)):
                    getattr(twin, name).copy_(value)
            self.cells.append(twin)
        self.n_states = stack.states_per_layer
        self.dense = {}
        for layer in top.layers:
            if isinstance(layer, keras.layers.Dense):
                self.dense[layer.name] = (_t(layer.kernel), _t(layer.bias))

    def encode(self, reading, seconds):
        columns = [reading]
        if self.angles:
            radians = reading[:, self.angles] * (np.pi / 180)
            columns += [radians.sin(), radians.cos()]
        if len(self.events):
            columns.append((reading[:, self.events] > self.thresholds).float())
        if len(self.periods):
            phase = (torch.remainder(seconds[:, None], self.periods) / self.periods).float() * (2 * np.pi)
            columns += [phase.sin(), phase.cos()]
        x = torch.cat(columns, -1)[:, self.order]
        return ((x - self.mean) / self.std).clamp(-self.clip, self.clip)

    def forward(self, reading, seconds, last, states):
        last = torch.where(torch.isfinite(reading), reading, last)
        x = y = self.encode(last, seconds)
        new = []
        for k, cell in enumerate(self.cells):
            s = states[k * self.n_states : (k + 1) * self.n_states]
            out = cell(y, s[0]) if self.n_states == 1 else cell(y, tuple(s))
            new += [out] if self.n_states == 1 else list(out)
            y = new[-self.n_states]
        w, b = self.dense.get("head_hidden", (None, None))
        deep = torch.cat([y, x], -1)
        deep = torch.relu(deep @ w + b) if w is not None else deep
        heads = []
        for kind in ("quantities", "quantiles", "events"):  # as the export's heads: its quantiles too
            if f"{kind}_head" in self.dense:
                w, b = self.dense[f"{kind}_head"]
                z = deep @ w + b
                if f"{kind}_wide" in self.dense:
                    w, b = self.dense[f"{kind}_wide"]
                    z = z + x @ w + b
                heads.append(torch.sigmoid(z) if kind == "events" else z)
        return torch.cat(heads, -1), last, new


def forecast_rows(models, rounds, quick, table):
    # The twin is one member's step on the raw readings, with one state running on.
    path = export_of("forecast", models, ["model.ensemble=1", "data.anomalies=[]"])
    meta = export.metadata(path, "forecast")
    loaded = tf.saved_model.load(str(path))
    step = loaded.signatures["step"]
    twin = StepTwin(export.load_keras(path))
    count = 200 if quick else 2000
    x, seconds = (np.array(a) for a in forecast_speed.readings(meta, count + 2))  # writable, as PyTorch wants
    names = meta["state"]

    def nlpapps_stream():
        state = loaded.signatures["initial_state"](batch_size=tf.constant(1))
        state = {k: state[k] for k in names}
        for i in range(len(x)):
            out = step(reading=tf.constant(x[i : i + 1]), time=tf.constant(seconds[i : i + 1]), **state)
            state = {k: out[k] for k in names}
            yield state

    def torch_stream():
        last = torch.from_numpy(np.array(loaded.signatures["initial_state"](batch_size=tf.constant(1))["last_reading"]))
        states = [torch.zeros(1, twin.cells[0].hidden_size) for _ in names[1:]]
        with torch.inference_mode():
            for i in range(len(x)):
                _, last, states = twin(
                    torch.from_numpy(x[i : i + 1]), torch.from_numpy(seconds[i : i + 1]), last, states
                )
                yield states

    # The twin's recurrent states follow the export's over the whole stream: the same function.
    difference = max(
        float(np.abs(np.array(a[names[-1]]) - b[-1].numpy()).max()) for a, b in zip(nlpapps_stream(), torch_stream())
    )
    print(f"{path}: largest difference of the recurrent state, export's step against the twin's: {difference:.1e}")
    label = "forecast step, ms per reading at batch 1, median (lower is better)"
    ms = {"nlpapps": [], "PyTorch": []}
    streams = {"nlpapps": nlpapps_stream, "PyTorch": torch_stream}
    for r in range(rounds):
        for name in FRAMEWORKS if r % 2 == 0 else FRAMEWORKS[::-1]:
            stream, times = streams[name](), []
            next(stream), next(stream)  # warm-up
            while True:
                start = time.perf_counter()
                if next(stream, None) is None:
                    break
                times.append((time.perf_counter() - start) * 1000)
            ms[name].append(statistics.median(times))
        print(f"round {r + 1}  {label}: " + "; ".join(f"{k} {v[-1]:.3f}" for k, v in ms.items()), flush=True)
    table.add(label, ms, "{:.3f}", lower_is_better=True)


def translate_rows(models, rounds, table):
    try:
        path = export.latest(models, "translate")
    except UserError:
        print(f"translate: no export under {models} (nlpapps run translate --output {models}); no row")
        return
    model = tf.saved_model.load(str(path))
    texts = translate_speed.test_sources(export.metadata(path, "translate"), 64)
    greedy, beam = model.signatures["translate_greedy"], model.signatures["translate_beam"]
    for name, call in (
        ("greedy", lambda b: greedy(text=b)),
        ("beam 4", lambda b: beam(text=b, beam_width=tf.constant(4))),
    ):
        label = f"translate {name}, sentences/s, batch 1"
        rates = [translate_speed.rate(call, texts, 1, 5.0) for _ in range(rounds)]
        table.add(label, {"nlpapps": rates, "PyTorch": []}, "{:,.1f}", note=TRANSLATE_NOTE)


# ------------------------------------------------------------------------------------------------ main


class Table:
    """The final table: per figure the median over the rounds of each framework (and the mean test
    accuracy where given), and how many times faster nlpapps is."""

    def __init__(self):
        self.rows = []

    def add(self, figure, values, fmt, accuracies=None, lower_is_better=False, note=""):
        medians = {k: statistics.median(v) if v else None for k, v in values.items()}
        shown = {}
        for k, v in medians.items():
            shown[k] = "" if v is None else fmt.format(v)
            if v is not None and accuracies:
                shown[k] += f" ({statistics.mean(accuracies[k]):.3f})"
        mine, theirs = medians["nlpapps"], medians["PyTorch"]
        ratio = "" if theirs is None else f"{(theirs / mine if lower_is_better else mine / theirs):.2f}x"
        self.rows.append({"figure": figure, **shown, "PyTorch": shown["PyTorch"] or note, "ratio": ratio})


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--apps", help="default: sentiment,classify,forecast,translate (--quick: sentiment)")
    parser.add_argument("--cells", default="gru,lstm", help="cells to train: gru, lstm, rnn")
    parser.add_argument("--directions", default="bi,uni", help="bi, uni or both")
    parser.add_argument(
        "--epochs", type=int, default=2, help="training epochs a round; the fastest after the first counts"
    )
    parser.add_argument("--steps", type=int, default=0, help="training batches an epoch (0: the whole split)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="threads for both (0: TensorFlow's default)")
    parser.add_argument(
        "--models", help="where exports are taken from (the newest) or written to (default: a temporary folder)"
    )
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--skip-serving", action="store_true")
    parser.add_argument("--quick", action="store_true", help="tiny settings, a smoke test of about a minute")
    args = parser.parse_args()
    if args.quick:
        args.apps, args.cells, args.directions = args.apps or "sentiment", "gru", "bi"
        args.epochs, args.steps, args.rounds = 2, args.steps or 3, min(args.rounds, 2)
    threads = args.threads or os.cpu_count()
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    torch.set_num_threads(threads)
    if os.getloadavg()[0] > os.cpu_count() - 1 and threads > 1:
        print(
            "the machine is busy: threads that wait on each other (PyTorch's OpenMP, TensorFlow's pools) slow "
            "down out of proportion; --threads 1 compares the two fairly here"
        )
    apps = (args.apps or "sentiment,classify,forecast,translate").split(",")
    models = Path(args.models or tempfile.mkdtemp(prefix="nlpapps_peer_"))
    print(
        f"PyTorch {torch.__version__} ({torch.get_num_threads()} threads), TensorFlow {tf.__version__} "
        f"(intra-op {tf.config.threading.get_intra_op_parallelism_threads() or f'default: {os.cpu_count()}'}, "
        f"inter-op {tf.config.threading.get_inter_op_parallelism_threads() or f'default: {os.cpu_count()}'}); "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )

    table = Table()

    for name in ("sentiment", "classify"):
        if name not in apps:
            continue
        app = App(name)
        if not args.skip_training:
            training_rows(
                app, args.cells.split(","), args.directions.split(","), args.epochs, args.steps, args.rounds, table
            )
        if not args.skip_serving:
            serving_rows(app, models, args.rounds, args.quick, table)
    if "forecast" in apps and not args.skip_serving:
        forecast_rows(models, args.rounds, args.quick, table)
    if "translate" in apps and not args.skip_serving:
        translate_rows(models, args.rounds, table)
    print(f"\nmedians of {args.rounds} rounds (accuracy: their mean); ratio: how many times faster nlpapps is")
    print(evaluation.table(table.rows, ["figure", "nlpapps", "PyTorch", "ratio"]))
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
