"""`nlpapps serve`: the exports under a folder answered over HTTP with TensorFlow Serving's REST API,
so that a client written for TensorFlow Serving works unchanged.

  POST /v1/models/NAME[/versions/N]:predict  {"signature_name": ..., "instances": [...]}  -> {"predictions": ...}
                                             {"signature_name": ..., "inputs": {...}}     -> {"outputs": ...}
  GET  /v1/models/NAME[/versions/N]          the versions' state
  GET  /v1/models/NAME[/versions/N]/metadata the signatures' inputs and outputs
  GET  /                                     a page to try each model by hand

Each model's newest version is served, as TensorFlow Serving's default policy does; a new version
appearing in the folder is loaded and warmed up beside the one serving, then takes its place. A
request that cannot be answered gets TensorFlow Serving's {"error": ...} with a 400 (404 for an
unknown model or path), never a stack trace; every request is one line in the log."""

import base64
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2

from nlpapps.cli import page
from nlpapps.errors import UserError, excerpt

MAX_BODY = 64 * 2**20  # bytes of one request's JSON
ROUTE = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+))?(?:(/metadata)|:(predict|classify|regress))?$")


class RequestError(Exception):
    """A request that cannot be answered: its HTTP status and TensorFlow Serving's error message."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


@dataclass
class Version:
    """One loaded export."""

    name: str
    number: int
    path: Path
    loaded: object
    meta: dict
    signatures: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------- the models


class Models:
    """The newest version of each model under `root` (only `names`, when given), loaded and warmed
    up; `scan()` picks up new versions (and new models) without a restart."""

    def __init__(self, root, names=(), log=print):
        self.root, self.names, self.log = Path(root), tuple(names), log
        self.serving = {}  # name -> Version
        self.failed = set()  # export folders that did not load: not tried again
        self.lock = threading.Lock()

    def candidates(self):
        """{name: (newest version number, its folder)} of the complete exports under root."""
        found = {}
        folders = [self.root / n for n in self.names] if self.names else sorted(self.root.iterdir())
        for folder in folders:
            if not folder.is_dir():
                continue
            numbers = sorted(
                int(p.name)
                for p in folder.iterdir()
                if p.name.isdigit() and (p / "saved_model.pb").is_file() and (p / "metadata.json").is_file()
            )
            if numbers:
                found[folder.name] = (numbers[-1], folder / str(numbers[-1]))
        return found

    def scan(self):
        """Load (and warm up) every newer version than the one serving; the old one serves meanwhile."""
        for name, (number, path) in self.candidates().items():
            current = self.serving.get(name)
            if (current and current.number >= number) or path in self.failed:
                continue
            try:
                version = load(name, number, path, self.log)
            except Exception as e:  # a broken export must not stop the others being served
                self.failed.add(path)
                self.log(f"not serving {path}: {excerpt(e, 300)}")
                continue
            with self.lock:
                self.serving[name] = version
            self.log(f"serving {name} version {number} from {path}")

    def watch(self, seconds, stop):
        """scan() every `seconds` until `stop` is set."""
        while not stop.wait(seconds):
            try:
                self.scan()
            except OSError as e:
                self.log(f"cannot read {self.root}: {e}")

    def get(self, name, number=None):
        with self.lock:
            version = self.serving.get(name)
        if version is None:
            raise RequestError(f"Servable not found for request: Latest({name})", 404)
        if number is not None and int(number) != version.number:
            raise RequestError(f"Servable not found for request: Specific({name}, {number})", 404)
        return version


def load(name, number, path, log):
    """A version loaded with tf.saved_model.load and warmed up."""
    started = time.perf_counter()
    loaded = tf.saved_model.load(str(path))
    meta = json.loads((path / "metadata.json").read_text())
    version = Version(name, number, path, loaded, meta, dict(loaded.signatures))
    calls = warm_up(version, log)
    log(f"loaded {name} version {number} and warmed it up ({calls} calls) in {time.perf_counter() - started:.1f} s")
    return version


# ----------------------------------------------------------------------------------------- warm-up


def compiled(signature):
    """Whether a signature runs a function compiled by XLA (which compiles once per input shape)."""
    library = signature.graph.as_graph_def().library
    return any("_XlaMustCompile" in f.attr and f.attr["_XlaMustCompile"].b for f in library.function)


def warm_up(version, log):
    """Call every signature once; a compiled one with every input shape it can meet: rows padded to
    each of export.CHUNK_ROWS, texts to each of the length edges of its serving. Returns the calls."""
    from nlpapps import export
    from nlpapps.data import text

    recipe = version.meta.get("recipe", {})
    edges = text.serving_edges(int(recipe["text.max_tokens"])) if "text.max_tokens" in recipe else [1]
    calls = 0
    for name, signature in version.signatures.items():
        full = compiled(signature)
        shapes = [(rows, length) for rows in export.CHUNK_ROWS for length in edges] if full else [(1, edges[0])]
        for rows, length in shapes:
            try:
                signature(**sample_inputs(signature, rows, length, recipe))
                calls += 1
            except (tf.errors.OpError, ValueError, TypeError) as e:
                log(f"warm-up of {version.name} {name} with {rows} rows: {excerpt(e, 200)}")
                break
    return calls


def sample_inputs(signature, rows, words, recipe):
    """Inputs for a warm-up call: `rows` rows; texts of `words` words; numbers zero; a scalar its
    usual value (batch_size `rows`, beam_width the export's)."""
    scalars = {"batch_size": rows, "beam_width": recipe.get("decode.beam_width", 4)}
    inputs = {}
    for key, spec in signature.structured_input_signature[1].items():
        dims = spec.shape.as_list()
        if not dims:
            value = scalars.get(key, "" if spec.dtype == tf.string else 1)
            inputs[key] = tf.constant(value, spec.dtype)
            continue
        shape = [rows, *(d if d is not None else 1 for d in dims[1:])]
        if spec.dtype == tf.string:
            inputs[key] = tf.fill(shape, " ".join(["word"] * words))
        else:
            inputs[key] = tf.zeros(shape, spec.dtype)
    return inputs


# -------------------------------------------------------------------------------- the REST requests


def predict(version, body):
    """TensorFlow Serving's predict: the row ("instances") or the columnar ("inputs") form."""
    if not isinstance(body, dict):
        raise RequestError("JSON Value: the request must be a JSON object")
    name = body.get("signature_name", "serving_default")
    signature = version.signatures.get(name)
    if signature is None:
        raise RequestError(f'Serving signature name: "{excerpt(name)}" not found in signature def')
    specs = signature.structured_input_signature[1]
    if ("instances" in body) == ("inputs" in body):
        raise RequestError('JSON Value: the request must have exactly one of "instances" or "inputs"')
    rows = "instances" in body
    values = instances_by_input(body["instances"], specs) if rows else named_inputs(body["inputs"], specs)
    tensors = {key: to_tensor(key, values[key], spec) for key, spec in specs.items()}
    try:
        outputs = {k: v.numpy() for k, v in signature(**tensors).items()}
    except tf.errors.OpError as e:
        raise RequestError(e.message.strip().splitlines()[0]) from None
    if rows:
        return {"predictions": as_rows(outputs, len(body["instances"]))}
    if len(outputs) == 1:
        return {"outputs": to_json(*outputs.items())}
    return {"outputs": {k: to_json(k, v) for k, v in outputs.items()}}


def instances_by_input(instances, specs):
    """The row form's list of instances as {input name: [value of each instance]}."""
    if not isinstance(instances, list) or not instances:
        raise RequestError("JSON Value: instances must be a non-empty list")
    if all(isinstance(i, dict) and not is_b64(i) for i in instances):
        missing = [k for k in specs if any(k not in i for i in instances)]
        if missing:
            raise RequestError(f"Missing named input: {missing[0]} in an instance")
        return {k: [i[k] for i in instances] for k in specs}
    if len(specs) != 1:
        raise RequestError(f"The signature takes {len(specs)} inputs ({', '.join(specs)}): name them in each instance")
    return {next(iter(specs)): instances}


def named_inputs(inputs, specs):
    """The columnar form's inputs as {input name: value}: an object by name, or one value alone."""
    if isinstance(inputs, dict) and not is_b64(inputs):
        missing = [k for k in specs if k not in inputs]
        if missing:
            raise RequestError(f"Missing named input: {missing[0]}")
        return inputs
    if len(specs) != 1:
        raise RequestError(f"The signature takes {len(specs)} inputs ({', '.join(specs)}): name each of them")
    return {next(iter(specs)): inputs}


def is_b64(value):
    return isinstance(value, dict) and set(value) == {"b64"}


def to_tensor(key, value, spec):
    """A JSON value as a tensor of the input's dtype and shape ({"b64": ...} for bytes)."""
    try:
        if spec.dtype == tf.string:
            array = np.array(strings(value), dtype=object)
        else:
            array = np.array(value, dtype=spec.dtype.as_numpy_dtype)
    except (ValueError, TypeError, OverflowError, base64.binascii.Error) as e:
        raise RequestError(f"Input {key}: not {spec.dtype.name} values ({excerpt(e, 120)})") from None
    if array.dtype == object and spec.dtype != tf.string:
        raise RequestError(f"Input {key}: ragged lists; every row must have the same length")
    if not spec.shape.is_compatible_with(array.shape):
        raise RequestError(f"Input {key}: shape {list(array.shape)} where the signature takes {spec.shape}")
    return tf.constant(array, spec.dtype)


def strings(value):
    """Nested lists of str / {"b64": ...} as nested lists of bytes."""
    if isinstance(value, list):
        return [strings(v) for v in value]
    if is_b64(value):
        return base64.b64decode(value["b64"], validate=True)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    raise TypeError(f"{excerpt(value)} is not a string")


def to_json(name, array):
    """An output as JSON values: strings as UTF-8 text, or {"b64": ...} for an output named *_bytes."""
    if array.dtype == object:
        if name.endswith("_bytes"):
            return np.vectorize(lambda b: {"b64": base64.b64encode(b).decode()}, otypes=[object])(array).tolist()
        return np.vectorize(lambda b: b.decode("utf-8", "replace"), otypes=[object])(array).tolist()
    return array.tolist()


def as_rows(outputs, batch):
    """The row form's answer: one prediction per instance (an output without the batch axis, such as
    a classifier's class names, is given whole in each)."""
    if len(outputs) == 1:
        name, array = next(iter(outputs.items()))
        return to_json(name, array)
    columns = {k: to_json(k, v) for k, v in outputs.items()}
    batched = {k for k, v in outputs.items() if v.ndim and v.shape[0] == batch}
    return [{k: (v[i] if k in batched else v) for k, v in columns.items()} for i in range(batch)]


def status(version):
    """GET /v1/models/NAME: the state of the version served."""
    return {
        "model_version_status": [
            {"version": str(version.number), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }


def metadata(version):
    """GET /v1/models/NAME/metadata: each signature's inputs and outputs, as TensorFlow Serving gives them."""

    def tensor(spec):
        dims = [{"size": str(-1 if d is None else d), "name": ""} for d in spec.shape.as_list()]
        dtype = types_pb2.DataType.Name(spec.dtype.as_datatype_enum)
        return {"dtype": dtype, "tensor_shape": {"dim": dims, "unknown_rank": False}}

    signatures = {
        name: {
            "inputs": {k: tensor(s) for k, s in signature.structured_input_signature[1].items()},
            "outputs": {k: tensor(s) for k, s in signature.structured_outputs.items()},
            "method_name": "tensorflow/serving/predict",
        }
        for name, signature in version.signatures.items()
    }
    return {
        "model_spec": {"name": version.name, "signature_name": "", "version": str(version.number)},
        "metadata": {"signature_def": {"signature_def": signatures}},
        "nlpapps": {"task": version.meta.get("task"), "created": version.meta.get("created")},
    }


# --------------------------------------------------------------------------------------- the server


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # connections kept alive between requests
    disable_nagle_algorithm = True  # else the body, written after the headers, waits for the client's delayed ACK
    server_version = "nlpapps"

    def do_GET(self):
        self.answer(self.route_get)

    def do_POST(self):
        self.answer(self.route_post)

    def route_get(self):
        if self.path in ("/", "/index.html"):
            return 200, page.html_page(self.server.models), "text/html; charset=utf-8"
        name, number, meta, verb = self.parse()
        if verb:
            raise RequestError(f"Malformed request: GET {excerpt(self.path)}", 404)
        version = self.server.models.get(name, number)
        return 200, metadata(version) if meta else status(version), None

    def route_post(self):
        name, number, meta, verb = self.parse()
        if verb != "predict":
            raise RequestError(f"Malformed request: POST {excerpt(self.path)}", 404 if not verb else 400)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise RequestError(f"Request of {length} bytes; at most {MAX_BODY}", 413)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise RequestError(f"JSON Parse error: {excerpt(e, 120)}") from None
        return 200, predict(self.server.models.get(name, number), body), None

    def parse(self):
        match = ROUTE.match(self.path.split("?", 1)[0])
        if not match:
            raise RequestError(f"Malformed request: {self.command} {excerpt(self.path)}", 404)
        return match.group(1), match.group(2), bool(match.group(3)), match.group(4)

    def answer(self, route):
        started = time.perf_counter()
        try:
            code, body, kind = route()
        except RequestError as e:
            code, body, kind = e.status, {"error": str(e)}, None
        except Exception as e:  # noqa: BLE001  the client gets one line, the log the kind of failure
            code, body, kind = 500, {"error": f"{type(e).__name__}: {excerpt(e, 200)}"}, None
        payload = body.encode() if kind else json.dumps(body, ensure_ascii=False).encode()
        self.send_response_only(code)
        self.send_header("Content-Type", kind or "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        ms = (time.perf_counter() - started) * 1000
        self.server.log(f"{self.client_address[0]} {self.command} {excerpt(self.path, 80)} {code} {ms:.1f} ms")

    def log_message(self, format, *args):  # http.server's own lines: the one line above says it all
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # many clients at once wait to be accepted instead of being refused

    def __init__(self, address, models, log):
        self.models, self.log = models, log
        super().__init__(address, Handler)


def start(models, host, port, poll_seconds, log):
    """Load and warm up the models, then listen: (server, stop event); serve_forever() answers."""
    models.scan()
    if not models.serving:
        if models.names:
            raise UserError(f"no export of {', '.join(models.names)} under {models.root}")
        log(f"no exports under {models.root} yet: watching for them")
    server = Server((host, port), models, log)
    stop = threading.Event()
    threading.Thread(target=models.watch, args=(poll_seconds, stop), daemon=True).start()
    return server, stop
