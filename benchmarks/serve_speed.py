"""Latency of `nlpapps serve` from a client on the same machine (loopback only), after warm-up.

    python benchmarks/serve_speed.py [--models saved_models] [--sentiment sentiment] [--translate translate]
                                     [--requests 300] [--translations 40]

Starts `nlpapps serve --models DIR --port 0` (it loads and warms up every model under DIR), waits
until it is ready, then, with requests in TensorFlow Serving's REST form over kept-alive connections:

  1. one-text sentiment: --requests requests one after the other, each a test snippet; p50 and p99;
  2. translate with beam 4: --translations requests, each one sentence of the shipped corpus; p50, p99;
  3. 200 sentiment requests at once from 8 client threads: every one answered (none lost, none an
     error) and each answer the same as `nlpapps predict --model sentiment --json` gives for its text.

Prints each figure with the bar it is held to and the machine's load. Every wait is bounded.
"""

import argparse
import csv
import gzip
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

SHIPPED = Path(__file__).resolve().parent.parent / "nlpapps" / "data" / "shipped"
TIMEOUT = 120  # seconds any one request may take


def nlpapps_exe():
    beside = Path(sys.executable).parent / "nlpapps"
    return str(beside) if beside.is_file() else "nlpapps"


def start_server(models, ready_seconds):
    """`nlpapps serve` on a free loopback port: (process, port, log lines)."""
    args = [nlpapps_exe(), "serve", "--models", str(models), "--host", "127.0.0.1", "--port", "0"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log = []
    reader = threading.Thread(target=lambda: [log.append(line.decode(errors="replace")) for line in proc.stderr])
    reader.daemon = True
    reader.start()
    deadline = time.monotonic() + ready_seconds
    started = time.monotonic()
    while time.monotonic() < deadline:
        found = next(
            (re.search(r"ready on http://127\.0\.0\.1:(\d+)/", line) for line in log if "ready on" in line), None
        )
        if found:
            print(f"server ready after {time.monotonic() - started:.0f} s (load and warm-up)")
            return proc, int(found.group(1)), log
        if proc.poll() is not None:
            sys.exit("the server stopped:\n" + "".join(log[-20:]))
        time.sleep(0.5)
    proc.terminate()
    sys.exit(f"the server was not ready within {ready_seconds} s:\n" + "".join(log[-20:]))


class Client:
    """One kept-alive HTTP/1.1 connection to the server."""

    def __init__(self, port):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)

    def predict(self, model, body):
        """(seconds, HTTP status, JSON answer) of one predict request."""
        payload = json.dumps(body).encode()
        started = time.perf_counter()
        self.connection.request("POST", f"/v1/models/{model}:predict", payload, {"Content-Type": "application/json"})
        answer = self.connection.getresponse()
        data = answer.read()
        return time.perf_counter() - started, answer.status, json.loads(data)


def percentiles(seconds):
    ms = sorted(s * 1000 for s in seconds)
    return statistics.median(ms), ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]


def snippets(n):
    with gzip.open(SHIPPED / "sentiment_snippets.tsv.gz", "rt", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r["text"] for r in rows[-n:]]  # from the end of the file, whatever the split


def sentences(n):
    with gzip.open(SHIPPED / "bible_en_fr.tsv.gz", "rt", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r["en"] for r in rows[-n:] if len(r["en"].split()) <= 20]


def sentiment_latency(port, model, texts):
    client = Client(port)
    client.predict(model, {"instances": [texts[0]]})  # the connection opened
    times = []
    for text in texts:
        seconds, status, _ = client.predict(model, {"instances": [text]})
        assert status == 200
        times.append(seconds)
    return percentiles(times)


def translate_latency(port, model, texts):
    client = Client(port)
    times = []
    for text in texts:
        body = {"signature_name": "translate_beam", "inputs": {"text": [text], "beam_width": 4}}
        seconds, status, answer = client.predict(model, body)
        assert status == 200, answer
        times.append(seconds)
    return percentiles(times)


def concurrent(port, model, texts, threads):
    """Each text one request, `threads` clients at once: {text index: prediction}, lost/failed count."""
    local = threading.local()

    def one(i):
        if not hasattr(local, "client"):
            local.client = Client(port)
        try:
            _, status, answer = local.client.predict(model, {"instances": [texts[i]]})
        except (OSError, http.client.HTTPException) as e:
            return i, None, repr(e)
        return i, answer["predictions"][0] if status == 200 else None, status

    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(one, range(len(texts)), timeout=TIMEOUT * 4))
    return {i: p for i, p, _ in results if p is not None}, [(i, why) for i, p, why in results if p is None]


def cli_answers(models, model, texts):
    """What `nlpapps predict --json` says for each text."""
    args = [nlpapps_exe(), "predict", "--model", model, "--models", str(models), "--json", "-"]
    proc = subprocess.run(args, input="\n".join(texts).encode() + b"\n", capture_output=True, timeout=600)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    return [json.loads(line) for line in proc.stdout.decode().splitlines()]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="saved_models")
    parser.add_argument("--sentiment", default="sentiment")
    parser.add_argument("--translate", default="translate")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--translations", type=int, default=40)
    parser.add_argument("--ready-seconds", type=int, default=900)
    a = parser.parse_args()
    print(f"load before: {os.getloadavg()[0]:.2f} (1-min average, {os.cpu_count()} cores)")
    proc, port, _ = start_server(a.models, a.ready_seconds)
    try:
        p50, p99 = sentiment_latency(port, a.sentiment, snippets(a.requests))
        print(
            f"sentiment, one text a request: p50 {p50:.2f} ms, p99 {p99:.2f} ms ({a.requests} requests; bars 5 / 20 ms)"
        )
        p50, p99 = translate_latency(port, a.translate, sentences(a.translations))
        print(f"translate, one sentence, beam 4: p50 {p50:.1f} ms, p99 {p99:.1f} ms (bar: p50 100 ms)")
        texts = snippets(200)
        answered, failed = concurrent(port, a.sentiment, texts, 8)
        cli = cli_answers(a.models, a.sentiment, [t.replace("\n", " ") for t in texts])
        same = sum(
            answered[i]["label"] == c["label"] and round(answered[i]["score"], 3) == c["score"]
            for i, c in enumerate(cli)
            if i in answered
        )
        print(
            f"200 requests from 8 threads: {len(answered)} answered, {len(failed)} lost or failed, "
            f"{same} the same as `nlpapps predict --json`"
        )
        for i, why in failed[:5]:
            print(f"  request {i}: {why}")
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
