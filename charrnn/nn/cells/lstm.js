// The LSTM's batch-1 step in the page of `charrnn export`: lstm.py's (PyTorch's) equations and
// gate order i, f, g, o:
//     [i, f, g, o] = [sigmoid, sigmoid, tanh, sigmoid](W_ih x + b_ih + W_hh h + b_hh)
//     c' = f * c + i * g
//     h' = o * tanh(c')
// Shape key: H hidden units. xi [4H] is the input side W_ih x + b_ih; s.h, s.c [H] are updated
// in place; w.weight_hh [4H, H] row-major, w.bias_hh [4H].
CELL_STEPS.lstm = {
  state: ["h", "c"],
  layer(H, w, ops) {
    const a = new Float64Array(4 * H), sigmoid = ops.sigmoid;
    return function step(xi, s) {
      ops.matvec(w.weight_hh, w.bias_hh, s.h, a, 4 * H, H);
      const h = s.h, c = s.c;
      for (let j = 0; j < H; j++) {
        const i = sigmoid(xi[j] + a[j]);
        const f = sigmoid(xi[H + j] + a[H + j]);
        const g = Math.tanh(xi[2 * H + j] + a[2 * H + j]);
        const o = sigmoid(xi[3 * H + j] + a[3 * H + j]);
        c[j] = f * c[j] + i * g;
        h[j] = o * Math.tanh(c[j]);
      }
    };
  },
};
