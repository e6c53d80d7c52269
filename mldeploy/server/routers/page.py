"""``GET /``: one self-contained page (no CDN, works offline) to try the served models by hand."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(tags=["page"])

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>mldeploy</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:960px;padding:0 1em;color:#222}
form{display:flex;gap:.6em;align-items:center;flex-wrap:wrap;margin:1em 0} button{padding:.35em 1em}
#result img{max-width:100%;border:1px solid #ccc} .error{color:#c62828} table{border-collapse:collapse}
td,th{border:1px solid #ddd;padding:.2em .6em;text-align:left} code{background:#f4f4f4;padding:0 .25em}
</style></head>
<body>
<h1>mldeploy</h1>
<p>Pick a model and an image; the answer shows the boxes, the counts and the version that answered.</p>
<form id="form">
  <select id="model" name="model" aria-label="model"></select>
  <input id="file" name="file" type="file" accept="image/*" aria-label="image" required>
  <button id="go" type="submit">Detect</button>
</form>
<div id="status" role="status"></div>
<div id="result"></div>
<script>
const $ = (id) => document.getElementById(id);
fetch("models").then((r) => r.json()).then((info) => {
  for (const m of info.models) {
    const o = document.createElement("option");
    o.value = m.name; o.textContent = m.name + " (" + m.live + ")";
    if (m.name === info.default) o.selected = true;
    $("model").appendChild(o);
  }
});
$("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = $("file").files[0];
  if (!file) return;
  const body = new FormData(); body.append("file", file);
  const model = encodeURIComponent($("model").value);
  $("status").textContent = "working..."; $("result").textContent = "";
  // one request, one inference: the detections and the annotated picture come back together
  const response = await fetch("models/" + model + "/predict?format=json&image=1", {method: "POST", body});
  const data = await response.json();
  if (!response.ok) {
    $("status").innerHTML = ""; const p = document.createElement("p");
    p.className = "error"; p.textContent = response.status + ": " + data.error.message; $("status").appendChild(p); return;
  }
  const img = document.createElement("img");
  img.alt = "annotated image"; img.src = data.image;
  const table = document.createElement("table");
  table.innerHTML = "<tr><th>label</th><th>count</th></tr>";
  for (const [label, n] of Object.entries(data.counts)) {
    const row = table.insertRow(); row.insertCell().textContent = label; row.insertCell().textContent = n;
  }
  $("status").textContent = data.count + " found by " + data.version + " (" + data.route + ")";
  $("status").dataset.count = data.count;
  $("result").append(table, img);
});
</script>
</body></html>
"""


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page():
    return PAGE
