"""`charrnn inspect --html FILE`: one self-contained page (styles, script and data inline; it
makes no network request) that shows the inspection.

The page colours the text by surprisal (the terminal view's shades) or, once a unit is chosen,
by that unit's value after reading each character, blue (negative) through white to red
(positive), as in Karpathy, Johnson & Fei-Fei, "Visualizing and Understanding Recurrent
Networks" (2015). Hovering a character shows its surprisal, what the model expected there (its
top-k after the character before) and the chosen unit's value. The interpretable units
(charrnn.tools.units) are listed; clicking one chooses it. Keys: left / right arrow, the
previous / next unit; s, back to surprisal.

Limits, so the page stays responsive: it holds the first PAGE_MAX_CHARS characters (one element
each; the rest is cut, and the page says so), and the values of every unit for the first
UNIT_BYTES / (number of units) of them (one byte per value; characters beyond have no unit
colour, and the page says so). The JSON output has everything.

Encoding: the colours span what the unit really spans. Per unit, lo = min(0, min v) and
hi = max(0, max v) over the stored characters; a value v >= 0 is stored as
round(127 v / hi) + 128 in one byte, a value v < 0 as round(127 v / |lo|) + 128, so white is
0, the deepest red the unit's highest value and the deepest blue its lowest (the legend shows
lo and hi); a unit that never goes below 0 has no blue.

Public API:
  page_html(ins, ranked, checkpoint) -> str
  write_html(path, ins, ranked, checkpoint) -> str (the path)
  PAGE_MAX_CHARS, UNIT_BYTES
"""

from __future__ import annotations

import base64
import html
import json
import math

import numpy as np

from charrnn.fileio import write_atomically

PAGE_MAX_CHARS = 100_000       # characters on the page (one element each)
UNIT_BYTES = 8_000_000         # bytes of unit values on the page (one per unit and character)
# the background of a character by its surprisal, one per whole bit (0: none; 8: 8 bits or more):
# the terminal view's shades, shared with the page of `charrnn export`
SHADES = ("", "#ffffd7", "#ffffaf", "#ffff87", "#ffd75f", "#ffaf00", "#ff8700", "#ff5f00",
          "#ff0000")


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def _quantize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """values [M, H] -> (bytes [H, M] unit-major, lo [H], hi [H]) as the module docstring
    says (lo <= 0 <= hi; a side the unit never reaches is 0)."""
    v = values.astype(np.float64)
    lo = np.minimum(0.0, v.min(axis=0)) if len(v) else np.zeros(v.shape[1])
    hi = np.maximum(0.0, v.max(axis=0)) if len(v) else np.zeros(v.shape[1])
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = np.where(v < 0, v / np.where(lo < 0, -lo, 1.0), v / np.where(hi > 0, hi, 1.0))
    q = np.rint(scaled * 127.0) + 128.0
    return np.clip(q, 1, 255).astype(np.uint8).T, lo, hi


def page_data(ins, ranked: list[dict], checkpoint: str) -> dict:
    """The page's data object: the text, surprisal, top-k and unit values (as base64)."""
    n = len(ins.text)
    m = min(n, PAGE_MAX_CHARS)
    n_units = ins.layers * ins.hidden_size * len(ins.state_names)
    u = min(m, UNIT_BYTES // max(n_units, 1))
    surprisal = ins.surprisal[:m].astype(np.float32)
    probs = np.rint(ins.top_probs[:m] * 65535).astype(np.uint16)
    units, lows, scales = {}, {}, {}
    for (layer, name), values in ins.states.items():
        q, lo, hi = _quantize(values[:u])
        units[f"{layer}/{name}"] = _b64(q)
        lows[f"{layer}/{name}"] = [float(x) for x in lo]
        scales[f"{layer}/{name}"] = [float(x) for x in hi]
    loss = ins.loss
    return {
        "checkpoint": checkpoint, "cell": ins.cell, "layers": ins.layers,
        "hidden": ins.hidden_size, "states": ins.state_names, "vocab": ins.vocab,
        "chars": n, "page_chars": m, "unit_chars": u, "text": ins.text[:m],
        "bits_per_char": ins.bits_per_char, "loss": loss,
        "perplexity": math.exp(loss) if loss < 700 else None,
        "top_k": int(ins.top_ids.shape[1]),
        "surprisal": _b64(surprisal), "top_ids": _b64(ins.top_ids[:m].astype(np.uint32)),
        "top_probs": _b64(probs), "units": units, "lows": lows, "scales": scales, "ranked": ranked,
    }


def page_html(ins, ranked: list[dict], checkpoint: str) -> str:
    """The whole page as a string."""
    data = json.dumps(page_data(ins, ranked, checkpoint), ensure_ascii=False)
    data = data.replace("<", "\\u003c")              # nothing in the data can end the script
    title = html.escape(f"charrnn inspect: {checkpoint}")
    script = _SCRIPT.replace("%SHADES%", json.dumps(SHADES))
    return (_TEMPLATE.replace("%TITLE%", title).replace("%STYLE%", STYLE)
            .replace("%SCRIPT%", script).replace("%DATA%", data))


def write_html(path: str, ins, ranked: list[dict], checkpoint: str) -> str:
    """Write the page to path (atomically); returns path. OSError when it cannot be written."""
    write_atomically(path, page_html(ins, ranked, checkpoint).encode("utf-8"))
    return path


_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>%TITLE%</title>
<style>%STYLE%</style></head>
<body>
<header>
  <h1>charrnn inspect</h1>
  <div id="meta"></div>
  <div id="notes"></div>
  <div id="controls">
    <span>colour by</span>
    <button id="by-surprisal" class="on" title="s">surprisal</button>
    <span>or unit</span>
    <select id="layer" aria-label="layer"></select>
    <select id="state" aria-label="state"></select>
    <input id="unit" type="number" min="0" value="0" aria-label="unit index">
    <button id="by-unit" title="left / right arrow: previous / next unit">show unit</button>
    <span id="legend"></span>
  </div>
</header>
<main>
  <div id="text" aria-label="the text, one element per character"></div>
  <aside><h2>Interpretable units</h2>
    <p class="hint">Pearson r of each unit with a feature of the text; click to colour by it.</p>
    <div id="ranked"></div></aside>
</main>
<div id="tip" hidden></div>
<script type="application/json" id="data">%DATA%</script>
<script>%SCRIPT%</script>
</body></html>
"""

# the look, shared with the page of `charrnn export` (charrnn/tools/export.py)
STYLE = """
body{margin:0;font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;color:#222;background:#fafafa}
header{position:sticky;top:0;z-index:2;background:#fff;border-bottom:1px solid #ddd;padding:8px 16px}
h1{font-size:17px;margin:0 12px 0 0;display:inline}
#meta{display:inline;color:#555}
#notes{color:#a40;font-size:13px}
#notes:empty{display:none}
#controls{margin-top:6px;display:flex;flex-wrap:wrap;gap:6px;align-items:center}
button{font:inherit;padding:2px 10px;border:1px solid #bbb;border-radius:4px;background:#f4f4f4;cursor:pointer}
button.on{background:#334;color:#fff;border-color:#334}
select,input{font:inherit;padding:1px 4px}
input[type=number]{width:5em}
#legend{display:inline-flex;align-items:center;gap:4px;margin-left:10px;font-size:12px;color:#555}
#legend i{display:inline-block;width:150px;height:12px;border:1px solid #ccc}
main{display:flex;gap:16px;padding:12px 16px;align-items:flex-start}
#text{flex:1;min-width:0;font:13px/1.55 ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace;
  white-space:pre-wrap;word-break:break-all;background:#fff;border:1px solid #ddd;padding:10px}
#text>div{content-visibility:auto;contain-intrinsic-size:auto 400px}
#text span{border-radius:2px}
#text span.nl::before{content:"\\21b5";color:#bbb}
#text span.na{color:#999}
#text span.cur{outline:1px solid #333}
aside{width:330px;flex:none;position:sticky;top:96px;max-height:calc(100vh - 110px);overflow:auto;
  background:#fff;border:1px solid #ddd;padding:8px 10px;font-size:13px}
h2{font-size:14px;margin:0 0 4px}
.hint{color:#666;margin:0 0 8px;font-size:12px}
.feat{margin:6px 0 2px;color:#333}
.u{display:inline-block;margin:1px 3px 1px 0;padding:0 5px;border:1px solid #ccc;border-radius:3px;
  cursor:pointer;font:12px ui-monospace,monospace;background:#f7f7f7}
.u.on{background:#334;color:#fff}
#tip{position:fixed;z-index:3;background:#fff;border:1px solid #999;border-radius:4px;padding:6px 8px;
  font-size:12px;box-shadow:0 2px 8px rgba(0,0,0,.2);pointer-events:none;min-width:170px}
#tip table{border-collapse:collapse}
#tip td{padding:0 4px}
#tip .bar{display:inline-block;height:8px;background:#668}
#tip tr.hit{font-weight:bold}
"""

_SCRIPT = r"""
(function(){
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
function bytes(b64){const s=atob(b64), a=new Uint8Array(s.length);
  for(let i=0;i<s.length;i++) a[i]=s.charCodeAt(i); return a;}
const surprisal = new Float32Array(bytes(D.surprisal).buffer);
const topIds = new Uint32Array(bytes(D.top_ids).buffer);
const topProbs = new Uint16Array(bytes(D.top_probs).buffer);
const K = D.top_k, text = D.text, M = D.page_chars, U = D.unit_chars;
const units = {};
for (const key in D.units) units[key] = bytes(D.units[key]);

// surprisal shades (the terminal's), one per whole bit, then the unit scale's 21 steps
const SHADES = %SHADES%;
const STEPS = 10;
function unitColour(x){   // x in [-1, 1]: blue, white, red
  const t = Math.min(1, Math.abs(x)), w = Math.round(255 * (1 - t));
  return x < 0 ? `rgb(${w},${Math.round(255 - 100 * t)},255)` : `rgb(255,${w},${w})`;
}
const css = [];
SHADES.forEach((c, i) => { if (c) css.push(`#text span.s${i}{background:${c}}`); });
for (let i = -STEPS; i <= STEPS; i++)
  css.push(`#text span.v${i + STEPS}{background:${unitColour(i / STEPS)}}`);
const style = document.createElement("style"); style.textContent = css.join("\n");
document.head.appendChild(style);

function esc(c){ return c === "&" ? "&amp;" : c === "<" ? "&lt;" : c === ">" ? "&gt;" : c; }
function shown(c){ const k = c.codePointAt(0);
  return c === "\n" ? "\\n" : c === "\t" ? "\\t" : c === " " ? "space" : k < 32 ? "0x" + k.toString(16) : c; }

// the text: blocks of about 2000 characters, cut after a newline where there is one
const box = document.getElementById("text");
const chars = Array.from(text);   // code points, as the model's characters
const parts = []; let block = [];
chars.forEach((c, i) => {
  block.push(c === "\n" ? '<span class="nl">\n</span>' : "<span>" + esc(c) + "</span>");
  if ((block.length >= 2000 && c === "\n") || block.length >= 4000) {
    parts.push("<div>" + block.join("") + "</div>"); block = []; }
});
if (block.length) parts.push("<div>" + block.join("") + "</div>");
box.innerHTML = parts.join("");
const spans = box.getElementsByTagName("span");
const base = Array.from(spans, s => s.className);

let mode = "surprisal", current = null;
function shadeOf(i){ const b = surprisal[i]; return b >= 1 ? "s" + Math.min(8, Math.floor(b)) : ""; }
function valueOf(key, unit, i){ const q = units[key][unit * U + i];
  return (q - 128) / 127 * (q < 128 ? -D.lows[key][unit] : D.scales[key][unit]); }
function paint(){
  const n = spans.length;
  if (mode === "surprisal") {
    for (let i = 0; i < n; i++) spans[i].className = (base[i] + " " + shadeOf(i)).trim();
  } else {
    const [key, unit] = current, row = units[key], off = unit * U;
    for (let i = 0; i < n; i++) {
      if (i >= U) { spans[i].className = (base[i] + " na").trim(); continue; }
      const step = Math.round((row[off + i] - 128) / 127 * STEPS);
      spans[i].className = (base[i] + " v" + (step + STEPS)).trim();
    }
  }
  document.getElementById("by-surprisal").classList.toggle("on", mode === "surprisal");
  document.getElementById("by-unit").classList.toggle("on", mode === "unit");
  document.querySelectorAll(".u").forEach(b => b.classList.toggle("on", mode === "unit"
    && b.dataset.key === current[0] && +b.dataset.unit === current[1]));
  legend();
}
function legend(){
  const el = document.getElementById("legend");
  if (mode === "surprisal") {
    el.innerHTML = "bits: " + SHADES.map((c, i) => `<b style="background:${c || "#fff"};padding:0 4px;border:1px solid #ddd">${i}${i === 8 ? "+" : ""}</b>`).join("");
  } else {
    const [key, unit] = current, [layer, state] = key.split("/");
    const lo = D.lows[key][unit], hi = D.scales[key][unit];
    el.innerHTML = `L${layer} ${state}${unit}: ${lo.toFixed(2)} <i style="background:linear-gradient(90deg,${lo < 0 ? unitColour(-1) : "#fff"},#fff,${hi > 0 ? unitColour(1) : "#fff"})"></i> +${hi.toFixed(2)}`;
  }
}

// controls
const layerSel = document.getElementById("layer"), stateSel = document.getElementById("state");
const unitIn = document.getElementById("unit");
for (let l = 0; l < D.layers; l++) layerSel.add(new Option("layer " + l, l));
D.states.forEach(s => stateSel.add(new Option(s, s)));
unitIn.max = D.hidden - 1;
function choose(layer, state, unit){
  unit = Math.max(0, Math.min(D.hidden - 1, unit | 0));
  layerSel.value = layer; stateSel.value = state; unitIn.value = unit;
  mode = "unit"; current = [layer + "/" + state, unit]; paint();
}
function fromControls(){ choose(+layerSel.value, stateSel.value, +unitIn.value); }
[layerSel, stateSel, unitIn].forEach(el => el.addEventListener("change", fromControls));
document.getElementById("by-unit").addEventListener("click", fromControls);
document.getElementById("by-surprisal").addEventListener("click", () => { mode = "surprisal"; paint(); });
document.addEventListener("keydown", e => {
  if (e.target.tagName === "INPUT" || e.target.tagName === "SELECT") return;
  if (e.key === "s") { mode = "surprisal"; paint(); }
  else if (e.key === "ArrowRight" || e.key === "ArrowLeft") {
    const [key, unit] = current || ["0/" + D.states[0], -1], [l, s] = key.split("/");
    choose(+l, s, unit + (e.key === "ArrowRight" ? 1 : -1)); e.preventDefault();
  }
});

// the interpretable units
const list = document.getElementById("ranked");
if (!D.ranked.length) list.textContent = "(none: the text has no feature that varies)";
D.ranked.forEach(f => {
  const h = document.createElement("div"); h.className = "feat"; h.textContent = f.description;
  list.appendChild(h);
  f.units.forEach(u => {
    const b = document.createElement("span"); b.className = "u";
    b.dataset.key = u.layer + "/" + u.state; b.dataset.unit = u.unit;
    b.textContent = `L${u.layer} ${u.state}${u.unit} ${u.r >= 0 ? "+" : ""}${u.r.toFixed(2)}`;
    b.title = `layer ${u.layer}, ${u.state}[${u.unit}]: r = ${u.r.toFixed(3)} with "${f.description}"`;
    b.addEventListener("click", () => choose(u.layer, u.state, u.unit));
    list.appendChild(b);
  });
});

// header and notes
const pct = x => (100 * x).toFixed(x < 0.01 ? 2 : 1) + "%";
document.getElementById("meta").textContent = `${D.checkpoint}: ${D.cell}, ${D.layers} layer(s) of ${D.hidden}; ` +
  `${D.chars.toLocaleString()} characters, ${D.bits_per_char.toFixed(3)} bits/char`;
const notes = [];
if (M < D.chars) notes.push(`The page shows the first ${M.toLocaleString()} of ${D.chars.toLocaleString()} characters (the --json output has them all).`);
if (U < M) notes.push(`Unit values are on the page for the first ${U.toLocaleString()} characters only (one byte per unit and character); grey characters have none.`);
document.getElementById("notes").textContent = notes.join(" ");

// hover: surprisal, what the model expected here, the unit's value
const tip = document.getElementById("tip");
let hovered = null;
box.addEventListener("mouseover", e => {
  const s = e.target; if (s.tagName !== "SPAN") return;
  const i = Array.prototype.indexOf.call(s.parentNode.children, s) + blockStart(s.parentNode);
  if (hovered) hovered.classList.remove("cur");
  hovered = s; s.classList.add("cur");
  let out = `<b>${esc(shown(chars[i]))}</b> at ${i}`;
  if (i > 0) {
    const b = surprisal[i];
    out += `<br>${b.toFixed(2)} bits (p = ${pct(Math.pow(2, -b))})<br>expected here:<table>`;
    for (let j = 0; j < K; j++) {
      const id = topIds[(i - 1) * K + j], p = topProbs[(i - 1) * K + j] / 65535;
      const c = D.vocab[id];
      out += `<tr class="${c === chars[i] ? "hit" : ""}"><td>${esc(shown(c))}</td><td>${pct(p)}</td>` +
             `<td><span class="bar" style="width:${Math.round(60 * p)}px"></span></td></tr>`;
    }
    out += "</table>";
  } else out += "<br>(the first character: nothing predicts it)";
  if (mode === "unit" && i < U) {
    const [key, unit] = current, [l, st] = key.split("/");
    out += `L${l} ${st}${unit} = ${valueOf(key, unit, i).toFixed(3)}`;
  }
  tip.innerHTML = out; tip.hidden = false;
  const x = Math.min(e.clientX + 14, innerWidth - tip.offsetWidth - 8);
  const y = e.clientY + 18 + tip.offsetHeight > innerHeight ? e.clientY - tip.offsetHeight - 10 : e.clientY + 18;
  tip.style.left = x + "px"; tip.style.top = y + "px";
});
box.addEventListener("mouseleave", () => { tip.hidden = true; if (hovered) hovered.classList.remove("cur"); });
const starts = new Map(); { let n = 0; for (const d of box.children) { starts.set(d, n); n += d.children.length; } }
function blockStart(div){ return starts.get(div) || 0; }

paint();
window.inspectPage = {choose, spans, ready: true};
})();
"""
