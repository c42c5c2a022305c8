// The minLSTM's batch-1 step in the page of `charrnn export`: minlstm.py's equations and gate
// order f, i, n (no gate sees the previous state, so there is no W_hh):
//     f  = sigmoid(W_if x + b_if),   i = sigmoid(W_ii x + b_ii),   n = W_in x + b_in
//     f' = f / (f + i),   h' = f' * h + (1 - f') * n
// f' is taken as minlstm.py's step takes it, sigmoid(softplus(-p_i) - softplus(-p_f)) with p_f,
// p_i the pre-activations: finite where f and i both underflow and f / (f + i) would be 0 / 0.
// Shape key: H hidden units. xi [3H] is the input side W_ih x + b_ih; s.h [H] is updated in place.
CELL_STEPS.minlstm = {
  state: ["h"],
  layer(H, w, ops) {
    const sigmoid = ops.sigmoid;
    const softplus = x => Math.max(x, 0) + Math.log1p(Math.exp(-Math.abs(x)));
    return function step(xi, s) {
      const h = s.h;
      for (let j = 0; j < H; j++) {
        const fp = sigmoid(softplus(-xi[H + j]) - softplus(-xi[j]));
        h[j] = fp * h[j] + (1 - fp) * xi[2 * H + j];
      }
    };
  },
};
