"""Metrics, baselines, result tables and plots, shared by every task."""

import numpy as np
from sklearn import metrics as skm


def classification(y_true, y_pred, labels):
    """Accuracy, macro-F1 and per-class precision/recall/F1/support over `labels`."""
    p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "macro_f1": float(skm.f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "per_class": {
            str(c): {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, c in enumerate(labels)
        },
    }


def regression(y_true, y_pred):
    """Mean absolute error and Pearson r (None where a side is constant)."""
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    r = None if np.std(y_true) == 0 or np.std(y_pred) == 0 else float(np.corrcoef(y_true, y_pred)[0, 1])
    return {"mae": float(skm.mean_absolute_error(y_true, y_pred)), "pearson": r}


def confusion_scores(matrix, labels, scored=None):
    """`classification` from a confusion matrix (rows: true class, columns: predicted, both in
    `labels` order) accumulated batch by batch; the macro average is over the `scored` labels
    (all by default), accuracy over every row."""
    matrix = np.asarray(matrix, dtype=float)
    tp, support, predicted = np.diag(matrix), matrix.sum(axis=1), matrix.sum(axis=0)
    p = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    r = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    f = np.divide(2 * p * r, p + r, out=np.zeros_like(tp), where=(p + r) > 0)
    chosen = [i for i, c in enumerate(labels) if scored is None or c in scored]
    return {
        "accuracy": float(tp.sum() / max(matrix.sum(), 1)),
        "macro_f1": float(f[chosen].mean()) if chosen else 0.0,
        "per_class": {
            str(labels[i]): {
                "precision": float(p[i]),
                "recall": float(r[i]),
                "f1": float(f[i]),
                "support": int(support[i]),
            }
            for i in chosen
        },
    }


class Moments:
    """Mean absolute error and Pearson r of (true, predicted) pairs added batch by batch, from
    running sums (float64) rather than every pair."""

    def __init__(self):
        self.n, self.sums = 0, np.zeros(6)

    def add(self, y_true, y_pred):
        t, p = np.asarray(y_true, float).ravel(), np.asarray(y_pred, float).ravel()
        self.n += len(t)
        self.sums += [np.abs(t - p).sum(), t.sum(), p.sum(), (t * t).sum(), (p * p).sum(), (t * p).sum()]

    def result(self):
        n = max(self.n, 1)
        absolute, st, sp, stt, spp, stp = self.sums / n
        var_t, var_p = stt - st * st, spp - sp * sp
        # A side that is constant has no correlation (as `regression` says); rounding leaves a trace.
        constant = var_t <= 1e-12 * max(stt, 1e-300) or var_p <= 1e-12 * max(spp, 1e-300)
        r = None if constant else float(np.clip((stp - st * sp) / np.sqrt(var_t * var_p), -1, 1))
        return {"mae": float(absolute), "pearson": r}


def majority(train_labels, size):
    """Predictions of the majority-class baseline: the most frequent training label, `size` times."""
    values, counts = np.unique(train_labels, return_counts=True)
    return np.full(size, values[np.argmax(counts)], dtype=object)


def translation_scores(hypotheses, references, lowercase=True):
    """Corpus BLEU and chrF (sacrebleu, its default 13a tokenization) of detokenized strings;
    case-insensitive by default."""
    import sacrebleu

    hypotheses, references = [str(h) for h in hypotheses], [[str(r) for r in references]]
    return {
        "bleu": float(sacrebleu.corpus_bleu(hypotheses, references, lowercase=lowercase).score),
        "chrf": float(sacrebleu.CHRF(lowercase=lowercase).corpus_score(hypotheses, references).score),
    }


def table(rows, columns):
    """A plain-text table; rows are dicts, numbers shown with 3 decimals, missing as '-'."""

    def cell(v):
        return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)

    body = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(b[i]) for b in body)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(b, widths)) for b in body]
    return "\n".join(lines)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and CI
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path):
    """Every figure ends the same way: laid out, written as a PNG, closed (pyplot keeps open ones)."""
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)


def plot_history(history, path):
    """Training curves: every metric that has a val_ twin, one panel each."""
    plt = _pyplot()
    names = [k for k in history if not k.startswith("val_") and f"val_{k}" in history]
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        epochs = range(1, len(history[name]) + 1)
        ax.plot(epochs, history[name], label="train")
        ax.plot(epochs, history[f"val_{name}"], label="validation")
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.legend()
    _save(fig, path)


def plot_confusion(y_true, y_pred, labels, path, matrix=None):
    """The confusion matrix of (y_true, y_pred) over `labels`, or the given `matrix` (rows true)."""
    plt = _pyplot()
    matrix = skm.confusion_matrix(y_true, y_pred, labels=labels) if matrix is None else np.asarray(matrix)
    size = max(4, 0.35 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    skm.ConfusionMatrixDisplay(matrix, display_labels=labels).plot(
        ax=ax, colorbar=False, xticks_rotation="vertical", include_values=len(labels) <= 12
    )
    _save(fig, path)


# ------------------------------------------------------------------------- forecasts and baselines
# Forecast arrays are [steps, horizon]: row t holds the forecasts made at t for t+1 … t+horizon.


def errors(truth, predicted):
    """MAE, RMSE and bias (the mean of predicted − truth: above zero, too high) over the finite truth values."""
    truth, predicted = np.asarray(truth, float), np.asarray(predicted, float)
    keep = np.isfinite(truth)
    diff = predicted[keep] - truth[keep]
    return {"mae": float(np.abs(diff).mean()), "rmse": float(np.sqrt((diff**2).mean())), "bias": float(diff.mean())}


def persistence(values, horizon):
    """The last value, for every horizon step: float[steps, horizon]."""
    return np.repeat(np.asarray(values, float)[:, None], horizon, axis=1)


def seasonal_naive(values, season, horizon):
    """The value at the same time one season earlier: for t+h, values[t+h-k*season] with the
    smallest k that reaches the past (k=1 while h <= season). NaN where that is before the start."""
    values = np.asarray(values, float)
    n = len(values)
    out = np.full((n, horizon), np.nan)
    for h in range(1, horizon + 1):
        back = season * int(np.ceil(h / season))
        source = np.arange(n) + h - back
        ok = source >= 0
        out[ok, h - 1] = values[source[ok]]
    return out


def event_persistence(now_train, future_train, now):
    """P(event at t+h | event at t or not), estimated on the training period: float[steps, horizon].
    now_train: bool[steps]; future_train: float[steps, horizon] (0/1, NaN unknown); now: bool[steps]."""
    now_train, future_train = np.asarray(now_train, bool), np.asarray(future_train, float)
    rates = [
        np.nanmean(future_train[now_train == state], axis=0)
        if (now_train == state).any()
        else np.nanmean(future_train, axis=0)
        for state in (False, True)
    ]
    return np.where(np.asarray(now, bool)[:, None], rates[1], rates[0])


def brier(truth, probability):
    truth, probability = np.asarray(truth, float), np.asarray(probability, float)
    keep = np.isfinite(truth)
    return float(((probability[keep] - truth[keep]) ** 2).mean())


def brier_skill(truth, probability, reference):
    """1 - Brier(forecast) / Brier(reference): 1 is perfect, 0 no better than the reference."""
    base = brier(truth, reference)
    return None if base == 0 else 1.0 - brier(truth, probability) / base


def roc_auc(truth, probability):
    """Area under the ROC curve; None when the truth has one class only."""
    truth, probability = np.asarray(truth, float), np.asarray(probability, float)
    keep = np.isfinite(truth)
    if len(np.unique(truth[keep])) < 2:
        return None
    return float(skm.roc_auc_score(truth[keep].astype(int), probability[keep]))


def plot_reliability(curves, path, bins=10):
    """Reliability diagram: observed frequency against forecast probability, one line per
    (label, truth, probability) in `curves`, with the forecasts' histogram below."""
    from sklearn.calibration import calibration_curve

    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5, 6), height_ratios=(3, 1), sharex=True)
    top.plot([0, 1], [0, 1], "k:", label="perfectly reliable")
    for label, truth, probability in curves:
        truth, probability = np.asarray(truth, float), np.asarray(probability, float)
        keep = np.isfinite(truth)
        if len(np.unique(truth[keep])) < 2:
            continue
        observed, forecast = calibration_curve(truth[keep], probability[keep], n_bins=bins, strategy="quantile")
        top.plot(forecast, observed, "o-", label=label)
        bottom.hist(probability[keep], bins=20, range=(0, 1), histtype="step", label=label)
    top.set_ylabel("observed frequency")
    top.legend(fontsize=8)
    bottom.set_xlabel("forecast probability")
    bottom.set_yscale("log")
    bottom.set_ylabel("forecasts")
    _save(fig, path)


def plot_forecast(times, panels, path, title=""):
    """Lines over time, one panel per (name, {label: values}) in `panels`."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 2.8 * len(panels)), squeeze=False, sharex=True)
    for ax, (name, lines) in zip(axes[:, 0], panels):
        for label, values in lines.items():
            ax.plot(times, values, label=label, lw=1.8 if label == "truth" else 1.1)
        ax.set_ylabel(name)
        ax.legend(fontsize=8, loc="upper left")
    axes[0, 0].set_title(title)
    fig.autofmt_xdate()
    _save(fig, path)


def plot_attention(weights, source_tokens, output_tokens, path, title=""):
    """A heatmap of attention weights[output, source]: which source words each output word read, with
    a colour bar for the weight and `title` above; returns the figure (written and closed)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(5, 0.45 * len(source_tokens) + 3), max(3, 0.4 * len(output_tokens) + 2)))
    image = ax.imshow(np.asarray(weights), cmap="viridis", aspect="auto", vmin=0.0)
    fig.colorbar(image, ax=ax, label="attention weight")
    ax.set_title(title, fontsize=9, wrap=True)
    ax.set_xticks(range(len(source_tokens)), source_tokens, rotation=60, ha="right")
    ax.set_yticks(range(len(output_tokens)), output_tokens)
    ax.set_xlabel("source")
    ax.set_ylabel("translation")
    _save(fig, path)
    return fig


def distinct_n(texts, n):
    """Distinct-n (Li et al., 2016): distinct word n-grams / all word n-grams over `texts`."""
    grams = [tuple(words[i : i + n]) for words in (str(t).split() for t in texts) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def ngram_perplexity(train, test, order):
    """Perplexity per token of an interpolated Witten-Bell n-gram model (nltk's `lm`) fitted on
    `train`, on `test` (sequences of string tokens). Every sequence starts from order - 1 start
    symbols and its end is a token the model predicts, as a neural language model's end is."""
    from nltk.lm import WittenBellInterpolated
    from nltk.lm.preprocessing import padded_everygram_pipeline

    grams, vocabulary = padded_everygram_pipeline(order, [list(s) for s in train])
    model = WittenBellInterpolated(order)
    model.fit(grams, vocabulary)
    total, count = 0.0, 0
    for sequence in test:
        padded = ["<s>"] * (order - 1) + list(sequence) + ["</s>"]
        for i in range(order - 1, len(padded)):
            total += model.logscore(padded[i], padded[i - order + 1 : i])
            count += 1
    return float(2.0 ** (-total / max(count, 1)))
