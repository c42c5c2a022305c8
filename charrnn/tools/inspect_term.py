"""`charrnn inspect`'s terminal view: the text shaded by surprisal, then a summary.

Shading uses the 256-colour palette's background colours (ECMA-48 SGR 48;5;n, which xterm,
VTE, iTerm2, Windows Terminal and tmux understand): no shade below 1 bit, then one step per bit
from pale yellow to red at 8 bits and more. Without colour the text is printed as it is.

Public API:
  format_text(inspection, color) -> str         the text, shaded when color
  format_summary(inspection, ranked, spans, color) -> str
  unit_label(layer, state, unit) -> "L1 c37"
"""

from __future__ import annotations

import math

# background per whole bit of surprisal: [0, 1) none, [1, 2) pale yellow ... [8, inf) red
SHADES = (None, 230, 229, 228, 221, 214, 208, 202, 196)
_RESET = "\x1b[0m"


def _shade(bits: float) -> int | None:
    if not bits >= 1:                                  # NaN (the first character) too
        return None
    return SHADES[min(int(bits), len(SHADES) - 1)]


def _visible(ch: str) -> str:
    """A control character other than newline and tab as its Unicode control picture, so the
    text cannot drive the terminal."""
    code = ord(ch)
    if ch in "\n\t" or 32 <= code != 127:
        return ch
    return chr(0x2400 + code) if code < 32 else "\u2421"


def format_text(ins, color: bool) -> str:
    """The inspected text; with color, each character on the background of its surprisal
    (runs of one shade share one escape sequence; a newline ends the shade first)."""
    return shaded(ins.text, ins.surprisal) if color else ins.text


def shaded(text: str, bits) -> str:
    """text with each character on the background of its surprisal bits[i] (runs of one shade
    share one escape sequence; a newline ends the shade first)."""
    out, current = [], None
    for ch, b in zip(text, bits):
        shade = None if ch == "\n" else _shade(b)
        if shade != current:
            out.append(_RESET if shade is None else f"\x1b[38;5;16;48;5;{shade}m")
            current = shade
        out.append(_visible(ch))
    if current is not None:
        out.append(_RESET)
    return "".join(out)


def _legend(color: bool) -> str:
    cells = []
    for bits, shade in enumerate(SHADES):
        label = f" {bits}" + ("+ " if bits == len(SHADES) - 1 else " ")
        cells.append(label if shade is None or not color
                     else f"\x1b[38;5;16;48;5;{shade}m{label}{_RESET}")
    return "shade (bits): " + "".join(cells)


def unit_label(layer: int, state: str, unit: int) -> str:
    """A unit's short name: layer, state array and index, e.g. 'L1 c37'."""
    return f"L{layer} {state}{unit}"


def format_summary(ins, ranked: list[dict], spans: list[tuple[int, float]], color: bool,
                   span_width: int = 12) -> str:
    """Mean bits/char, the most surprising spans and the interpretable units, as text lines."""
    n = len(ins.text)
    loss = ins.loss
    perplexity = math.exp(loss) if loss < 700 else math.inf
    lines = [f"{n} characters, {n - 1} scored: {ins.bits_per_char:.4f} bits/char "
             f"(loss {loss:.4f} nats/char, perplexity {perplexity:.3f})"]
    if ins.chars_skipped:
        lines.append(f"{ins.chars_skipped} character(s) outside the vocabulary skipped")
    if color:
        lines.append(_legend(color))
    if spans:
        lines.append(f"most surprising spans ({span_width} characters):")
        for start, bits in spans:
            piece = ins.text[start:start + span_width]
            lines.append(f"  {bits:8.2f} bits  at {start:<8d} {piece!r}")
    if ranked:
        lines.append("interpretable units (Pearson r of the unit with the feature, "
                     "by |r|; L<layer> <state><index>):")
        width = max(len(f["description"]) for f in ranked)
        for feature in ranked:
            units = "   ".join(f"{unit_label(u['layer'], u['state'], u['unit']):<9} {u['r']:+.3f}"
                               for u in feature["units"])
            lines.append(f"  {feature['description']:<{width}}  {units}")
    return "\n".join(lines)

