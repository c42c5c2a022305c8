// The vanilla RNN's batch-1 step in the page of `charrnn export`: rnn.py's equations,
//     h' = act(W_ih x + b_ih + W_hh h + b_hh),     act = tanh or relu
// Shape key: H hidden units. xi [H] is the input side W_ih x + b_ih (the page computes it);
// s.h [H] (Float64Array) is updated in place; w.weight_hh [H, H] row-major, w.bias_hh [H].
CELL_STEPS.rnn = {
  state: ["h"],
  layer(H, w, ops, nonlinearity) {
    const hh = new Float64Array(H), relu = nonlinearity === "relu";
    return function step(xi, s) {
      ops.matvec(w.weight_hh, w.bias_hh, s.h, hh, H, H);
      const h = s.h;
      for (let j = 0; j < H; j++) {
        const a = xi[j] + hh[j];
        h[j] = relu ? (a > 0 ? a : 0) : Math.tanh(a);
      }
    };
  },
};
