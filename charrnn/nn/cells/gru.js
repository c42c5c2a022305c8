// The GRU's batch-1 step in the page of `charrnn export`: gru.py's (PyTorch's) equations and
// gate order r, z, n:
//     r  = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
//     z  = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
//     n  = tanh(W_in x + b_in + r * (W_hn h + b_hn))
//     h' = (1 - z) * n + z * h
// Shape key: H hidden units. xi [3H] is the input side W_ih x + b_ih; s.h [H] is updated in
// place; w.weight_hh [3H, H] row-major, w.bias_hh [3H].
CELL_STEPS.gru = {
  state: ["h"],
  layer(H, w, ops) {
    const hh = new Float64Array(3 * H), sigmoid = ops.sigmoid;
    return function step(xi, s) {
      ops.matvec(w.weight_hh, w.bias_hh, s.h, hh, 3 * H, H);
      const h = s.h;
      for (let j = 0; j < H; j++) {
        const r = sigmoid(xi[j] + hh[j]);
        const z = sigmoid(xi[H + j] + hh[H + j]);
        const n = Math.tanh(xi[2 * H + j] + r * hh[2 * H + j]);
        h[j] = (1 - z) * n + z * h[j];
      }
    };
  },
};
