// The model of the page `charrnn export` writes: it decodes the embedded weights, runs the
// model one character at a time (each cell's step comes from charrnn/nn/cells/<cell>.js, which
// registers itself in CELL_STEPS), samples and scores; export_ui.js is the page around it.
//
// Shape key: V vocabulary, E embedding, H hidden, L layers, G gates, M feed-forward width.
// Weights keep PyTorch's names and layouts (charrnn/nn/model.py): one contiguous Float32Array
// per matrix, row-major, so W x is a run of dot products over contiguous rows. Activations are
// Float64Arrays: JavaScript's arithmetic is double precision, so the page computes what NumPy
// computes in float64 from the same float32 weights.
//
// The API, on window.charrnn once window.charrnn.ready is true (docs/export.md):
//   nextProbs(text)     the next-character distribution after reading text from a zero state,
//                       as an object {char: probability}
//   generate({prime, length, temperature, topK, topP, greedy, seed})   the generated text (the
//                       prime not included); the same seed gives the same text
//   score(text)         {bitsPerChar, scored, surprisal: [bits per character]}
//   Sampler(options)    generate's sample as a sequence: .next() gives a character, or null
//                       at its end (the page streams with it)
//   info, vocab, engine the model card's figures, the characters in id order, the kernel
(function () {
"use strict";
const D = JSON.parse(document.getElementById("model").textContent);
const INFO = D.info, VOCAB = INFO.vocab, V = VOCAB.length;
const INDEX = new Map(VOCAB.map((c, i) => [c, i]));
const EOD = INFO.eod === null ? -1 : INDEX.get(INFO.eod);

// -- the weights: base64 of little-endian float32 or float16 arrays, one after another --------

function base64Bytes(b64) {
  const s = atob(b64), a = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) a[i] = s.charCodeAt(i);
  return a;
}

function halfToFloat(u) {               // IEEE 754 binary16 -> number
  const sign = u & 0x8000 ? -1 : 1, e = (u >> 10) & 0x1f, m = u & 0x3ff;
  if (e === 0) return sign * m * 5.960464477539063e-8;        // subnormal: m 2^-24
  if (e === 31) return m ? NaN : sign * Infinity;
  return sign * (1 + m / 1024) * Math.pow(2, e - 15);
}

// Every weight is decoded into the memory `alloc` gives (the WebAssembly kernel's, or plain
// Float32Arrays): one contiguous Float32Array per tensor, PyTorch's layout.
function decodeWeights(alloc) {
  const bytes = base64Bytes(document.getElementById("weights").textContent.trim());
  const view = new DataView(bytes.buffer), half = D.dtype === "float16";
  const size = half ? 2 : 4, W = {};
  for (const [name, offset, shape] of D.tensors) {
    const n = shape.reduce((a, b) => a * b, 1), at = offset * size, w = alloc(n);
    for (let i = 0; i < n; i++)       // DataView: little-endian whatever the machine's order
      w[i] = half ? halfToFloat(view.getUint16(at + 2 * i, true)) : view.getFloat32(at + 4 * i, true);
    W[name] = w;
  }
  return W;
}

// -- the matrix-vector product: out [rows] = W [rows, cols] x [cols] + b [rows] (b may be null)

// Plain JavaScript: four sums per row, so the loop is not one long chain of dependent additions.
function matvecJs(W, b, x, out, rows, cols) {
  for (let i = 0, r = 0; i < rows; i++, r += cols) {
    let s0 = 0, s1 = 0, s2 = 0, s3 = 0, j = 0;
    for (; j + 3 < cols; j += 4) {
      s0 += W[r + j] * x[j];
      s1 += W[r + j + 1] * x[j + 1];
      s2 += W[r + j + 2] * x[j + 2];
      s3 += W[r + j + 3] * x[j + 3];
    }
    for (; j < cols; j++) s0 += W[r + j] * x[j];
    out[i] = (s0 + s1) + (s2 + s3) + (b === null ? 0 : b[i]);
  }
}

// WebAssembly with SIMD (charrnn/tools/export_wasm.py), where the browser has it and the page's
// address does not end in #js: the weights live in its memory, x and out are copied through
// two scratch vectors there. -> {W, matvec, engine}
function kernel() {
  const sizes = D.tensors.map(([, , shape]) => shape.reduce((a, b) => a * b, 1));
  const code = D.kernel === null ? null : base64Bytes(D.kernel);
  if (location.hash === "#js" || code === null || typeof WebAssembly !== "object" || !WebAssembly.validate(code))
    return {W: decodeWeights(n => new Float32Array(n)), matvec: matvecJs, engine: "javascript"};
  const widest = Math.max(...D.tensors.map(([, , shape]) => Math.max(...shape)), 1);
  const floats = sizes.reduce((a, n) => a + n + 4, 0);      // each tensor 16-byte aligned
  const bytes = 16 * Math.ceil(floats / 4) + 16 * widest;
  const memory = new WebAssembly.Memory({initial: Math.ceil(bytes / 65536) + 1});
  const exports = new WebAssembly.Instance(new WebAssembly.Module(code), {e: {m: memory}}).exports;
  let next = 0;
  const W = decodeWeights(n => {
    const w = new Float32Array(memory.buffer, next, n);
    next += 16 * Math.ceil(n / 4);
    return w;
  });
  const xs = new Float64Array(memory.buffer, next, widest), outs = new Float64Array(memory.buffer, next + 8 * widest, widest);
  const run = exports.matvec;
  return {W, engine: "webassembly-simd", matvec(w, b, x, out, rows, cols) {
    xs.set(x.length === cols ? x : x.subarray(0, cols));
    run(w.byteOffset, b === null ? 0 : b.byteOffset, xs.byteOffset, outs.byteOffset, rows, cols, b === null ? 0 : 1);
    out.set(rows === widest ? outs : outs.subarray(0, rows));
  }};
}

// -- the operations the cells share ---------------------------------------------------------

const KERNEL = kernel();
const ops = {
  sigmoid: a => 1 / (1 + Math.exp(-a)),     // exp(-a) = Infinity gives the limit 0
  matvec: KERNEL.matvec,
};

// -- the model: embedding -> L cells (with the residual and feed-forward blocks) -> decoder ----

const W = KERNEL.W;
const L = INFO.layers, H = INFO.hidden, E = INFO.embed, FFN = INFO.ffn_mult * H;
const BLOCKS = INFO.residual || FFN > 0;
const CELL = CELL_STEPS[INFO.cell];
const TABLE = new Array(V);             // layer 0's input side emb[v] W_ih0^T + b_ih0, per v

function tableRow(id) {
  if (TABLE[id] === undefined) {
    const w = W["rnn.weight_ih_l0"], row = new Float64Array(w.length / E);
    const emb = Float64Array.from(W["embedding.weight"].subarray(id * E, (id + 1) * E));
    ops.matvec(w, W["rnn.bias_ih_l0"], emb, row, row.length, E);
    TABLE[id] = row;
  }
  return TABLE[id];
}

// One sequence's state and step over the shared weights: feed(id) reads a character,
// logits() gives the next one's [V] logits.
function Runner() {
  const layers = [];
  for (let k = 0; k < L; k++) {
    const state = {};
    for (const name of CELL.state) state[name] = new Float64Array(H);
    const w = {weight_hh: W[`rnn.weight_hh_l${k}`] || null, bias_hh: W[`rnn.bias_hh_l${k}`] || null};
    const wih = W[`rnn.weight_ih_l${k}`];
    layers.push({
      state, step: CELL.layer(H, w, ops, INFO.nonlinearity), wih, bih: W[`rnn.bias_ih_l${k}`],
      xi: new Float64Array(wih.length / (k ? H : E)), out: BLOCKS ? new Float64Array(H) : state.h,
      ffn: FFN ? [0, 2].map(i => [W[`ffn.${k}.${i}.weight`], W[`ffn.${k}.${i}.bias`]]) : null,
    });
  }
  const u = new Float64Array(FFN), t = new Float64Array(H), logits = new Float64Array(V);
  const dec = W["decoder.weight"], decBias = W["decoder.bias"];

  function block(k) {                   // o_k = h_k (+ o_{k-1}), then o_k += ffn_k(o_k)
    const l = layers[k], o = l.out, h = l.state.h, prev = INFO.residual && k ? layers[k - 1].out : null;
    for (let j = 0; j < H; j++) o[j] = prev === null ? h[j] : h[j] + prev[j];
    if (l.ffn === null) return;
    const [[w1, b1], [w2, b2]] = l.ffn;
    ops.matvec(w1, b1, o, u, FFN, H);
    for (let j = 0; j < FFN; j++) if (u[j] < 0) u[j] = 0;      // relu
    ops.matvec(w2, b2, u, t, H, FFN);
    for (let j = 0; j < H; j++) o[j] += t[j];
  }

  return {
    feed(id) {
      for (let k = 0; k < L; k++) {
        const l = layers[k];
        let xi = l.xi;
        if (k === 0) xi = tableRow(id);
        else ops.matvec(l.wih, l.bih, layers[k - 1].out, xi, xi.length, H);
        l.step(xi, l.state);
        if (BLOCKS) block(k);
      }
    },
    logits() {
      ops.matvec(dec, decBias, layers[L - 1].out, logits, V, H);
      return logits;
    },
  };
}

// -- distributions and draws ------------------------------------------------------------------

// softmax(logits / T) into out: the max is subtracted before dividing by T, so a low
// temperature cannot overflow (the most likely character gets exp(0) = 1)
function softmax(logits, temperature, out) {
  let max = -Infinity, sum = 0;
  for (let i = 0; i < V; i++) if (logits[i] > max) max = logits[i];
  for (let i = 0; i < V; i++) sum += (out[i] = Math.exp((logits[i] - max) / temperature));
  for (let i = 0; i < V; i++) out[i] /= sum;
  return out;
}

function argmax(a) {                    // the first of equal maxima, as NumPy's argmax
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i] > a[best]) best = i;
  return best;
}

// sfc32 seeded through splitmix32: a small generator whose stream depends only on the seed
function makeRng(seed) {
  let x = (seed % 4294967296) >>> 0, y = Math.floor(seed / 4294967296) >>> 0;
  const mix = () => {
    x = (x + 0x9e3779b9) | 0;
    let z = x ^ y;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
  let a = mix(), b = mix(), c = mix(), d = 1;
  const next = () => {
    const r = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + r) | 0;
    return r >>> 0;
  };
  for (let i = 0; i < 12; i++) next();
  return () => (next() * 2097152 + (next() >>> 11)) / 9007199254740992;   // 53 bits, [0, 1)
}

// the candidates of a draw: top-k first (the k largest), then top-p (the smallest set of most
// likely candidates whose probability reaches p), as charrnn sample chooses them
const ALL = Array.from(VOCAB.keys());
function candidates(p, topK, topP) {
  let ids = ALL;
  if ((topK !== null && topK < V) || (topP !== null && topP < 1)) {
    ids = ALL.slice();
    ids.sort((i, j) => p[j] - p[i] || i - j);
    if (topK !== null && topK < V) ids = ids.slice(0, topK);
    if (topP !== null && topP < 1) {
      const total = ids.reduce((s, i) => s + p[i], 0);
      let cum = 0, n = 0;
      while (n < ids.length) { cum += p[ids[n++]] / total; if (cum >= topP) break; }
      ids = ids.slice(0, n);
    }
  }
  return ids;
}

function draw(p, ids, u) {              // inverse CDF over the candidates
  let total = 0;
  for (const i of ids) total += p[i];
  let x = u * total;
  for (const i of ids) { x -= p[i]; if (x < 0) return i; }
  return ids[ids.length - 1];
}

// -- the API ------------------------------------------------------------------------------------

function encode(text, what) {
  const chars = Array.from(text), unknown = [...new Set(chars.filter(c => !INDEX.has(c)))];
  if (unknown.length)
    throw new Error(`${what} has characters the model does not know: ` +
                    unknown.slice(0, 10).map(c => JSON.stringify(c)).join(", "));
  return chars.map(c => INDEX.get(c));
}

function setting(value, fallback) { return value === undefined || value === null || value === "" ? fallback : value; }

// A sample's settings, checked as charrnn sample checks them; throws an Error naming the bad one.
function settings(o) {
  const s = {
    prime: String(setting(o.prime, "")), length: Number(setting(o.length, 500)),
    temperature: Number(setting(o.temperature, 1)), greedy: !!o.greedy,
    topK: o.topK === undefined || o.topK === null || o.topK === "" ? null : Number(o.topK),
    topP: o.topP === undefined || o.topP === null || o.topP === "" ? null : Number(o.topP),
    seed: o.seed === undefined || o.seed === null || o.seed === "" ? null : Number(o.seed),
  };
  if (!(Number.isInteger(s.length) && s.length >= 0)) throw new Error(`length must be a whole number >= 0; got ${o.length}`);
  if (!(s.temperature > 0 && isFinite(s.temperature))) throw new Error(`temperature must be a number > 0; got ${o.temperature}`);
  if (s.topK !== null && !(Number.isInteger(s.topK) && s.topK >= 1)) throw new Error(`topK must be a whole number >= 1; got ${o.topK}`);
  if (s.topP !== null && !(s.topP > 0 && s.topP <= 1)) throw new Error(`topP must be in (0, 1]; got ${o.topP}`);
  if (s.seed !== null && !(Number.isSafeInteger(s.seed) && s.seed >= 0)) throw new Error(`seed must be a whole number >= 0; got ${o.seed}`);
  if (s.seed === null) s.seed = crypto.getRandomValues(new Uint32Array(1))[0];
  return s;
}

// A sample as a sequence: next() gives the next character, or null once it ends (its length,
// or, for a documents-mode model, the end-of-document symbol: one document per sample).
function Sampler(options) {
  const s = settings(options || {}), rng = makeRng(s.seed), run = Runner();
  let ids = encode(s.prime, "the prime");
  if (EOD >= 0) ids = [EOD].concat(ids);                   // a document starts from its symbol
  else if (!ids.length) ids = [INDEX.has("\n") ? INDEX.get("\n") : Math.floor(rng() * V)];
  for (const id of ids) run.feed(id);
  const p = new Float64Array(V);
  let n = 0, ended = false;
  return {
    settings: s,
    next() {
      if (ended || n >= s.length) return null;
      const logits = run.logits();
      let id;
      if (s.greedy) id = argmax(logits);
      else {
        softmax(logits, s.temperature, p);
        id = draw(p, candidates(p, s.topK, s.topP), rng());
      }
      if (id === EOD) { ended = true; return null; }
      n++;
      run.feed(id);
      return VOCAB[id];
    },
  };
}

function generate(options) {
  const sampler = Sampler(options), out = [];
  for (let c = sampler.next(); c !== null; c = sampler.next()) out.push(c);
  return out.join("");
}

function nextProbs(text) {
  const ids = encode(String(text), "the text");
  if (!ids.length) throw new Error("nextProbs needs at least one character to read");
  const run = Runner();
  for (const id of ids) run.feed(id);
  const p = softmax(run.logits(), 1, new Float64Array(V)), out = {};
  VOCAB.forEach((c, i) => { out[c] = p[i]; });
  return out;
}

// Each character's surprisal -log2 p in bits, as charrnn eval reads a text: from a zero state,
// the first character unscored (documents mode: read from the end-of-document symbol, every
// character scored). top: how many predictions to keep per character, for the hover.
function score(text, top) {
  const ids = encode(String(text), "the text"), run = Runner(), p = new Float64Array(V);
  const start = EOD >= 0 ? 0 : 1, bits = new Array(ids.length).fill(null), expected = [];
  if (EOD >= 0) run.feed(EOD);
  let sum = 0;
  ids.forEach((id, i) => {
    if (i >= start) {
      softmax(run.logits(), 1, p);
      bits[i] = -Math.log2(p[id]);
      sum += bits[i];
      if (top) expected[i] = candidates(p, top, null).slice(0, top).map(j => [VOCAB[j], p[j]]);
    }
    run.feed(id);
  });
  const scored = ids.length - start;
  return {bitsPerChar: scored > 0 ? sum / scored : null, scored, surprisal: bits, expected};
}

window.charrnn = {info: INFO, vocab: VOCAB, nextProbs, generate, score, Sampler,
                  engine: KERNEL.engine, ready: false};
})();
