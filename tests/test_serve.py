"""`nlpapps serve` through real HTTP on 127.0.0.1: the request bodies of TensorFlow Serving's REST
documentation answered as `tf.saved_model.load` answers in-process, the versions' state, 400s with
TensorFlow Serving's {"error": ...}, one log line per request, many clients at once, and a new
version served without a restart. One server per module, on the session's small sentiment model."""

import base64
import json
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from conftest import cli_env, nlpapps_exe

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

TEXTS = ["What a wonderful, moving film.", "Dreadful, boring and far too long.", "Ça m'a plu 😀", ""]


class Served:
    """A running `nlpapps serve`: its URL, models folder and log lines so far."""

    def __init__(self, root):
        self.root, self.log = root, []
        args = [nlpapps_exe(), "serve", "--models", str(root), "--port", "0", "--poll-seconds", "0.5"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=cli_env())
        threading.Thread(target=self._read, daemon=True).start()
        ready = self.wait_for(r"ready on (http://127\.0\.0\.1:\d+)/", 900)
        self.url = ready.group(1)

    def _read(self):
        for line in self.proc.stderr:
            self.log.append(line.decode("utf-8", "replace").rstrip("\n"))

    def wait_for(self, pattern, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            found = next((m for m in map(re.compile(pattern).search, list(self.log)) if m), None)
            if found:
                return found
            assert self.proc.poll() is None, "\n".join(self.log[-30:])
            time.sleep(0.2)
        raise AssertionError(f"no {pattern!r} in the log:\n" + "\n".join(self.log[-30:]))

    def call(self, path, body=None, raw=None):
        """(HTTP status, JSON answer) of a GET, or of a POST of `body` as JSON (or `raw` bytes)."""
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method="GET" if data is None else "POST")
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())


@pytest.fixture(scope="module")
def served(sentiment_export, tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    shutil.copytree(sentiment_export, root / "sentiment" / "1")
    server = Served(root)
    yield server
    server.proc.terminate()
    server.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def in_process(sentiment_export):
    """What tf.saved_model.load answers in this process for TEXTS."""
    import tensorflow as tf

    signature = tf.saved_model.load(str(sentiment_export)).signatures["serving_default"]
    return {k: v.numpy() for k, v in signature(text=tf.constant(TEXTS)).items()}


def assert_same(prediction, expected, i=None):
    """One prediction (row form: i is its row) or all outputs (columnar) against the in-process ones."""
    for name, value in expected.items():
        want = np.asarray(value if i is None or name == "classes" else value[i])
        if want.dtype.kind in "OS":
            text = np.vectorize(lambda b: b.decode(), otypes=[object])(want.astype(object))
            assert np.asarray(prediction[name], dtype=object).tolist() == text.tolist(), name
        else:
            np.testing.assert_allclose(np.asarray(prediction[name], float), want, rtol=1e-6, atol=1e-6, err_msg=name)


def test_the_row_form_gives_what_the_export_gives_in_process(served, in_process):
    status, answer = served.call("/v1/models/sentiment:predict", {"instances": TEXTS})
    assert status == 200 and list(answer) == ["predictions"], answer
    assert len(answer["predictions"]) == len(TEXTS)
    for i, prediction in enumerate(answer["predictions"]):
        assert_same(prediction, in_process, i)
    # a list of objects naming the input, with the signature named, to a version by number
    body = {"signature_name": "serving_default", "instances": [{"text": t} for t in TEXTS]}
    assert served.call("/v1/models/sentiment/versions/1:predict", body) == (200, answer)
    # bytes as {"b64": ...}
    body = {"instances": [{"b64": base64.b64encode(t.encode()).decode()} for t in TEXTS]}
    assert served.call("/v1/models/sentiment:predict", body) == (200, answer)


def test_the_columnar_form_gives_what_the_export_gives_in_process(served, in_process):
    status, answer = served.call("/v1/models/sentiment:predict", {"inputs": {"text": TEXTS}})
    assert status == 200 and list(answer) == ["outputs"], answer
    assert_same(answer["outputs"], in_process)
    assert served.call("/v1/models/sentiment:predict", {"inputs": TEXTS}) == (200, answer)  # the only input


def test_the_versions_state_and_the_signatures(served):
    state = {
        "model_version_status": [
            {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }
    assert served.call("/v1/models/sentiment") == (200, state)
    assert served.call("/v1/models/sentiment/versions/1") == (200, state)
    status, meta = served.call("/v1/models/sentiment/metadata")
    assert status == 200 and meta["model_spec"] == {"name": "sentiment", "signature_name": "", "version": "1"}
    signature = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["inputs"]["text"]["dtype"] == "DT_STRING"
    assert {"label", "score", "probabilities", "classes"} <= set(signature["outputs"])


BAD = {
    "not JSON": (b'{"instances": ["unfinished"', 400, "JSON Parse error"),
    "both forms": ({"instances": ["a"], "inputs": ["a"]}, 400, 'exactly one of "instances" or "inputs"'),
    "neither form": ({"signature_name": "serving_default"}, 400, 'exactly one of "instances" or "inputs"'),
    "unknown signature": ({"signature_name": "nope", "instances": ["a"]}, 400, 'signature name: "nope" not found'),
    "numbers for text": ({"instances": [1, 2]}, 400, "Input text: not string values"),
    "missing named input": ({"instances": [{"words": "a"}]}, 400, "Missing named input: text"),
    "empty instances": ({"instances": []}, 400, "instances must be a non-empty list"),
    "nested text": ({"inputs": {"text": [["a", "b"]]}}, 400, "Input text: shape [1, 2]"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_request_gets_a_400_with_an_error(served, case):
    body, code, words = BAD[case]
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    status, answer = served.call("/v1/models/sentiment:predict", raw=raw)
    assert status == code and list(answer) == ["error"] and words in answer["error"], answer
    assert "Traceback" not in answer["error"] and "\n" not in answer["error"]


def test_an_unknown_model_version_or_path_gets_a_404(served):
    assert served.call("/v1/models/nope:predict", {"instances": ["a"]}) == (
        404,
        {"error": "Servable not found for request: Latest(nope)"},
    )
    status, answer = served.call("/v1/models/sentiment/versions/7:predict", {"instances": ["a"]})
    assert status == 404 and "Specific(sentiment, 7)" in answer["error"]
    status, answer = served.call("/v2/anything")
    assert status == 404 and answer["error"].startswith("Malformed request: GET /v2/anything")


def test_one_log_line_per_request_and_many_clients_at_once(served, in_process):
    """40 requests from 8 threads: every one answered, each as in-process, each one line in the log."""

    def one(i):
        return served.call(f"/v1/models/sentiment:predict?n={i}", {"instances": [TEXTS[i % len(TEXTS)]]})

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(40)))
    for i, (status, answer) in enumerate(answers):
        assert status == 200
        assert_same(answer["predictions"][0], in_process, i % len(TEXTS))
    time.sleep(0.5)
    lines = [line for line in served.log if "POST /v1/models/sentiment:predict?n=" in line]
    assert len(lines) == 40 and all(re.search(r"127\.0\.0\.1 POST \S+ 200 [\d.]+ ms$", line) for line in lines)


def test_a_page_at_the_root_to_try_each_model(served):
    request = urllib.request.Request(served.url + "/")
    with urllib.request.urlopen(request, timeout=60) as answer:
        assert answer.status == 200 and answer.headers["Content-Type"].startswith("text/html")
        page = answer.read().decode()
    assert "<h2>sentiment <small>version 1, sentiment</small></h2>" in page
    assert "/v1/models/${name}:predict" in page


def test_a_new_version_is_served_without_a_restart(served, label_only_run):
    """Version 2 (the label-only model: neg/pos) appears in the folder as `nlpapps run` writes one."""
    shutil.copytree(label_only_run[0], served.root / "sentiment" / ".incoming")
    (served.root / "sentiment" / ".incoming").rename(served.root / "sentiment" / "2")
    served.wait_for(r"serving sentiment version 2", 600)
    status, state = served.call("/v1/models/sentiment")
    assert status == 200 and [v["version"] for v in state["model_version_status"]] == ["2"]
    status, answer = served.call("/v1/models/sentiment:predict", {"instances": ["good", "bad"]})
    assert status == 200 and {p["label"] for p in answer["predictions"]} <= {"neg", "pos"}
    assert served.call("/v1/models/sentiment/versions/1:predict", {"instances": ["good"]})[0] == 404
