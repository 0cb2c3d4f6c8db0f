"""The page `nlpapps serve` gives at /: each model served, to try by hand through the same REST API
a client uses. A text model answers a text box; a translation shows its attention as a heat map;
a forecast plots what follows the readings pasted as CSV."""

import html
import json

SCRIPT = r"""
const post = (name, body) => fetch(`/v1/models/${name}:predict`, {method: "POST", body: JSON.stringify(body)})
  .then(r => r.json());
const show = (id, value) => { document.getElementById(id).textContent = typeof value === "string" ? value :
  JSON.stringify(value, null, 1); };

function heat(canvas, weights, rows, columns) {
  const cell = 22, left = 90, top = 70, ctx = canvas.getContext("2d");
  canvas.width = left + cell * columns.length + 60; canvas.height = top + cell * rows.length + 10;
  ctx.font = "11px sans-serif";
  rows.forEach((r, i) => { ctx.fillStyle = "#000"; ctx.fillText(r, 2, top + cell * i + 15);
    columns.forEach((c, j) => { const w = weights[i][j];
      ctx.fillStyle = `rgb(${255 - 255 * w}, ${255 - 200 * w}, 255)`;
      ctx.fillRect(left + cell * j, top + cell * i, cell - 1, cell - 1); }); });
  columns.forEach((c, j) => { ctx.save(); ctx.translate(left + cell * j + 14, top - 4); ctx.rotate(-Math.PI / 3);
    ctx.fillStyle = "#000"; ctx.fillText(c, 0, 0); ctx.restore(); });
  for (let k = 0; k <= 10; k++) { ctx.fillStyle = `rgb(${255 - 25.5 * k}, ${255 - 20 * k}, 255)`;
    ctx.fillRect(canvas.width - 40, top + k * 12, 14, 12); }
  ctx.fillStyle = "#000"; ctx.fillText("0", canvas.width - 22, top + 10);
  ctx.fillText("1", canvas.width - 22, top + 130);
  ctx.fillText("attention: output word (rows) over source word (columns)", left, 12);
}

function plot(canvas, series, unit) {
  const ctx = canvas.getContext("2d"), w = canvas.width, h = canvas.height, all = series.flat();
  const lo = Math.min(...all), hi = Math.max(...all), span = hi - lo || 1, n = series[0].length;
  ctx.clearRect(0, 0, w, h); ctx.font = "11px sans-serif";
  series.forEach((s, k) => { ctx.strokeStyle = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"][k % 4]; ctx.beginPath();
    s.forEach((v, i) => { const x = 40 + (w - 50) * i / Math.max(n - 1, 1), y = h - 20 - (h - 30) * (v - lo) / span;
      i ? ctx.lineTo(x, y) : ctx.moveTo(x, y); }); ctx.stroke(); });
  ctx.fillStyle = "#000"; ctx.fillText(`${hi.toFixed(1)} ${unit}`, 0, 12); ctx.fillText(`${lo.toFixed(1)}`, 0, h - 20);
  ctx.fillText("+1 … +" + n + " steps", w / 2, h - 4);
}

async function text(name, id) {
  const texts = document.getElementById(id + "-in").value.split("\n").filter(t => t.trim());
  show(id + "-out", (await post(name, {instances: texts})));
}

async function translate(name, id, attention) {
  const texts = [document.getElementById(id + "-in").value];
  const answer = await post(name, {signature_name: attention ? "attention" : "serving_default", inputs: {text: texts}});
  if (answer.error) return show(id + "-out", answer.error);
  const o = answer.outputs;
  show(id + "-out", o.translation[0]);
  if (attention) { const rows = o.output_tokens[0].filter(t => t), columns = o.source_tokens[0].filter(t => t);
    heat(document.getElementById(id + "-map"), o.weights[0].slice(0, rows.length).map(r => r.slice(0, columns.length)),
      rows, columns); }
}

async function forecast(name, id, model) {
  const lines = document.getElementById(id + "-in").value.trim().split("\n"), header = lines[0].split(",");
  const rows = lines.slice(1).map(l => l.split(","));
  const at = f => header.indexOf(f), time = at(model.time);
  const readings = rows.map(r => model.features.map(f => at(f) < 0 || r[at(f)] === "" ? NaN : Number(r[at(f)])));
  const seconds = rows.map(r => Date.parse(r[time]) / 1000);
  const answer = await post(name, {signature_name: "forecast",
    inputs: {readings: [readings.map(r => r.map(v => isFinite(v) ? v : null))], time: [seconds]}});
  if (answer.error) return show(id + "-out", answer.error);
  const f = answer.outputs.forecast[0], k = 0, target = model.targets[k];
  show(id + "-out", model.targets.map((t, j) => `${t.name} [${t.unit}]: ` + f.map(h => h[j].toFixed(2)).join(", "))
    .join("\n"));
  plot(document.getElementById(id + "-map"), [f.map(h => h[k])], target.unit);
}
"""

STYLE = """body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}
section{border-top:1px solid #ccc;padding:.5em 0}textarea{width:100%}pre{background:#f4f4f4;padding:.5em;
white-space:pre-wrap}code{background:#f4f4f4}"""


def html_page(models):
    """The page for the models now served."""
    sections = [_section(i, v) for i, v in enumerate(sorted(models.serving.values(), key=lambda v: v.name))]
    body = "\n".join(sections) or f"<p>No model yet under <code>{html.escape(str(models.root))}</code>.</p>"
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>nlpapps serve</title>"
        f"<style>{STYLE}</style></head><body><h1>nlpapps serve</h1>"
        "<p>Each model answers <code>POST /v1/models/NAME:predict</code>, TensorFlow Serving's REST API; "
        "this page uses it too.</p>"
        f"{body}<script>{SCRIPT}</script></body></html>"
    )


def _section(i, version):
    task, name = version.meta.get("task"), version.name
    title = f"<h2>{html.escape(name)} <small>version {version.number}, {html.escape(str(task))}</small></h2>"
    id_, js_name = f"m{i}", html.escape(json.dumps(name))
    if task == "translate":
        attention = "attention" in version.signatures
        return (
            f"<section>{title}<textarea id='{id_}-in' rows='2'>Hello.</textarea>"
            f"<button onclick='translate({js_name}, \"{id_}\", {json.dumps(attention)})'>translate</button>"
            f"<pre id='{id_}-out'></pre><canvas id='{id_}-map' width='10' height='10'></canvas></section>"
        )
    if task == "forecast":
        model = {
            "features": [f["name"] for f in version.meta["features"]],
            "targets": version.meta["targets"],
            "time": version.meta["data"]["columns"]["time"],
        }
        header = ",".join([model["time"], *model["features"]])
        return (
            f"<section>{title}<p>Readings as CSV, oldest first (header: time, then the features):</p>"
            f"<textarea id='{id_}-in' rows='6'>{html.escape(header)}\n</textarea>"
            f"<button onclick='forecast({js_name}, \"{id_}\", {html.escape(json.dumps(model))})'>forecast</button>"
            f"<pre id='{id_}-out'></pre><canvas id='{id_}-map' width='600' height='220'></canvas></section>"
        )
    return (
        f"<section>{title}<textarea id='{id_}-in' rows='3'>What a wonderful film.</textarea>"
        f"<button onclick='text({js_name}, \"{id_}\")'>predict (one text a line)</button>"
        f"<pre id='{id_}-out'></pre></section>"
    )
