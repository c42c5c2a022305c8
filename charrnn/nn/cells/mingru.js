// The minGRU's batch-1 step in the page of `charrnn export`: mingru.py's equations and gate
// order z, n (no gate sees the previous state, so there is no W_hh):
//     z  = sigmoid(W_iz x + b_iz)
//     n  = W_in x + b_in
//     h' = (1 - z) * h + z * n
// Shape key: H hidden units. xi [2H] is the input side W_ih x + b_ih; s.h [H] is updated in place.
CELL_STEPS.mingru = {
  state: ["h"],
  layer(H, w, ops) {
    const sigmoid = ops.sigmoid;
    return function step(xi, s) {
      const h = s.h;
      for (let j = 0; j < H; j++) {
        const z = sigmoid(xi[j]);
        h[j] = (1 - z) * h[j] + z * xi[H + j];
      }
    };
  },
};
