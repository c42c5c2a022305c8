"""`charrnn inspect --dynamic`'s terminal view: static and dynamic surprisal side by side.

Each line of the text is shown twice, shaded by its static surprisal (`s|`) and then by its
dynamic one (`d|`, charrnn/infer/dynamic.py), with the line's mean bits/char under each
model; without colour, once, with the two means. The summary adds both bits/char, the gain,
and the windows where adaptation helped most (static minus dynamic bits, summed).

Public API:
  format_side_by_side(ins, color) -> str
  format_dynamic_summary(ins, span_width=12, count=5) -> str
"""

from __future__ import annotations

import numpy as np

from charrnn.tools.inspect import surprising_spans
from charrnn.tools.inspect_term import shaded


def _mean(bits: np.ndarray) -> float:
    ok = bits[~np.isnan(bits)]
    return float(ok.mean()) if len(ok) else float("nan")


def format_side_by_side(ins, color: bool) -> str:
    """The text line by line under both surprisals (module docstring). ins: an Inspection
    with dynamic_surprisal."""
    static, dynamic = ins.surprisal, ins.dynamic_surprisal
    lines, at = [], 0
    for line in ins.text.split("\n"):
        end = at + len(line) + 1                 # the newline belongs to the line it ends
        s, d = static[at:end], dynamic[at:end]
        means = f"{_mean(s):5.2f} {_mean(d):5.2f}"
        if color:
            lines.append(f"s| {shaded(line, s)}  ({_mean(s):.2f} bits/char)")
            lines.append(f"d| {shaded(line, d)}  ({_mean(d):.2f} bits/char)")
        else:
            lines.append(f"{means} | {line}")
        at = end
    head = [] if color else ["static dynamic (bits/char of the line) | the line"]
    return "\n".join(head + lines)


def format_dynamic_summary(ins, span_width: int = 12, count: int = 5) -> str:
    """Both bits/char, the gain and where adaptation helped most, as text lines."""
    d = ins.dynamic
    s_bits, d_bits = ins.bits_per_char, ins.dynamic_bits_per_char
    lines = [f"dynamic evaluation: {d_bits:.4f} bits/char against {s_bits:.4f} static "
             f"(gain {s_bits - d_bits:+.4f} bits/char; rule {d['rule']}, eta {d['eta']:.4g}, "
             f"lambda {d['lambda']:.4g}, segment {d['segment']})"]
    gain = np.nan_to_num(ins.surprisal - ins.dynamic_surprisal)
    spans = surprising_spans(gain, span_width, count)
    if spans:
        lines.append(f"where adaptation helped most ({span_width} characters, bits saved):")
        lines += [f"  {bits:8.2f} bits  at {start:<8d} {ins.text[start:start + span_width]!r}"
                  for start, bits in spans if bits > 0]
    return "\n".join(lines)
