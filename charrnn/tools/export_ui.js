// The page of `charrnn export` around its model (export_model.js, whose API it uses through
// window.charrnn): the model card, sampling streamed into the page with a stop button, and
// scoring a pasted text with charrnn inspect's surprisal shades.
(function () {
"use strict";
const {info: INFO, vocab: VOCAB, Sampler, score} = window.charrnn;
const V = VOCAB.length;

const $ = id => document.getElementById(id);
const SHADES = JSON.parse($("shades").textContent);    // charrnn inspect's, one per whole bit
const css = SHADES.map((c, i) => c ? `#text span.s${i}{background:${c}}` : "").join("\n");
document.head.appendChild(Object.assign(document.createElement("style"), {textContent: css}));
const esc = c => c === "&" ? "&amp;" : c === "<" ? "&lt;" : c === ">" ? "&gt;" : c;
const shown = c => c === "\n" ? "\\n" : c === "\t" ? "\\t" : c === " " ? "space" :
  c.codePointAt(0) < 32 ? "0x" + c.codePointAt(0).toString(16) : c;

function card() {
  const i = INFO, rows = [
    ["cell", i.cell + (i.cell === "rnn" ? ` (${i.nonlinearity})` : "")],
    ["layers", `${i.layers} x ${i.hidden} hidden` + (i.residual ? ", residual" : "") +
               (i.ffn_mult ? `, feed-forward x${i.ffn_mult}` : "")],
    ["embedding", i.embed], ["parameters", i.params.toLocaleString("en-US")],
    ["vocabulary", `${V} characters` + (i.eod !== null ? " (documents: one per sample)" : "")],
    ["best validation loss", i.best_val_loss === null ? "none yet" :
      `${i.best_val_loss.toFixed(4)} nats/char (${(i.best_val_loss / Math.LN2).toFixed(4)} bits/char)`],
    ["step", i.step.toLocaleString("en-US")], ["weights", `${i.dtype}, ${i.weight_bytes.toLocaleString("en-US")} bytes`],
    ["checkpoint", i.checkpoint], ["charrnn", i.version],
  ];
  $("card").innerHTML = rows.map(([k, v]) => `<tr><th>${k}</th><td>${String(v).replace(/[&<>]/g, esc)}</td></tr>`).join("");
  $("vocab").innerHTML = VOCAB.map(c => `<span title="${c === i.eod ? "end of document" : ""}">${esc(shown(c))}</span>`).join("");
  $("meta").textContent = `${i.checkpoint}: ${i.cell}, ${i.layers} layer(s) of ${i.hidden}, ` +
    `${i.params.toLocaleString("en-US")} parameters`;
}

// sampling, streamed: characters are generated in slices of about 20 ms, each slice appended
// to the output, so the page stays responsive and the stop button is heard between slices
let current = null;
function startSample() {
  stopSample("");
  const out = $("out"), status = $("status");
  let sampler;
  try {
    sampler = Sampler({prime: $("prime").value, length: $("length").value,
                       temperature: $("temperature").value, topK: $("topk").value,
                       topP: $("topp").value, greedy: $("greedy").checked, seed: $("seed").value});
  } catch (e) { status.textContent = e.message; status.className = "error"; return; }
  out.textContent = "";
  out.appendChild(Object.assign(document.createElement("span"), {className: "prime", textContent: sampler.settings.prime}));
  const text = out.appendChild(document.createTextNode(""));
  const job = {sampler, n: 0, t0: performance.now(), stopped: false, timer: 0};
  current = job;
  $("stop").disabled = false;
  status.className = "";
  const report = word => {
    const secs = (performance.now() - job.t0) / 1000;
    status.textContent = `${word} ${job.n.toLocaleString("en-US")} characters, ` +
      `${Math.round(job.n / Math.max(secs, 1e-3)).toLocaleString("en-US")} chars/s, seed ${sampler.settings.seed}`;
  };
  const slice = () => {
    if (job.stopped) return;
    const end = performance.now() + 20, chunk = [];
    let c = "";
    while (performance.now() < end && (c = sampler.next()) !== null) chunk.push(c);
    job.n += chunk.length;
    text.appendData(chunk.join(""));
    if (c === null) { report("done:"); finish(job); return; }
    report("sampling:");
    job.timer = setTimeout(slice, 0);
  };
  job.report = report;
  slice();
}
function finish(job) { job.stopped = true; if (current === job) { current = null; $("stop").disabled = true; } }
function stopSample(word) {
  if (current === null) return;
  const job = current;
  clearTimeout(job.timer);
  if (word) job.report(word);
  finish(job);
}

function startScore() {
  const box = $("text"), summary = $("summary"), text = $("score-text").value;
  let r;
  try { r = score(text, 5); } catch (e) { summary.textContent = e.message; summary.className = "error"; return; }
  summary.className = "";
  const chars = Array.from(text);
  box.innerHTML = chars.map((c, i) => {
    const b = r.surprisal[i], shade = b !== null && b >= 1 ? " s" + Math.min(8, Math.floor(b)) : "";
    return `<span class="${(c === "\n" ? "nl" : "") + shade}">${esc(c)}</span>`;
  }).join("");
  summary.textContent = r.bitsPerChar === null ? "too short to score: the first character has nothing before it" :
    `${r.bitsPerChar.toFixed(3)} bits/char over ${r.scored.toLocaleString("en-US")} characters`;
  box.scored = {r, chars};
}

const tip = $("tip");
function hover(e) {
  const s = e.target, box = $("text");
  if (s.tagName !== "SPAN" || !box.scored) return;
  const i = Array.prototype.indexOf.call(box.children, s), {r, chars} = box.scored;
  let html = `<b>${esc(shown(chars[i]))}</b> at ${i}`;
  if (r.surprisal[i] === null) html += "<br>(the first character: nothing predicts it)";
  else {
    html += `<br>${r.surprisal[i].toFixed(2)} bits (p = ${(100 * Math.pow(2, -r.surprisal[i])).toFixed(1)}%)<br>expected here:<table>`;
    for (const [c, p] of r.expected[i])
      html += `<tr class="${c === chars[i] ? "hit" : ""}"><td>${esc(shown(c))}</td><td>${(100 * p).toFixed(1)}%</td>` +
              `<td><span class="bar" style="width:${Math.round(60 * p)}px"></span></td></tr>`;
    html += "</table>";
  }
  tip.innerHTML = html; tip.hidden = false;
  tip.style.left = Math.min(e.clientX + 14, innerWidth - tip.offsetWidth - 8) + "px";
  tip.style.top = (e.clientY + 18 + tip.offsetHeight > innerHeight ? e.clientY - tip.offsetHeight - 10 : e.clientY + 18) + "px";
}

card();
const defaults = INFO.sample;
$("prime").value = defaults.prime;
$("length").value = defaults.length;
$("temperature").value = defaults.temperature;
$("topk").value = defaults.top_k === null ? "" : defaults.top_k;
$("topp").value = defaults.top_p === null ? "" : defaults.top_p;
$("sample").addEventListener("click", startSample);
$("stop").addEventListener("click", () => stopSample("stopped after"));
$("score").addEventListener("click", startScore);
$("text").addEventListener("mouseover", hover);
$("text").addEventListener("mouseleave", () => { tip.hidden = true; });
window.charrnn.ready = true;        // the API and the page both
})();
