"""Interpretable units: which hidden units track simple features of the text.

Karpathy, Johnson & Fei-Fei, "Visualizing and Understanding Recurrent Networks" (2015), found
LSTM cells that switch on inside quotes, count the position in a line or track the depth of
brackets. Here every unit (layer, state array, index) is ranked, for each feature below, by the
Pearson correlation over the text's characters of its value after reading character t with the
feature at t:

    r = sum_t (a_t - mean a)(f_t - mean f) / sqrt(sum_t (a_t - mean a)^2 sum_t (f_t - mean f)^2)

(r = 0 for a unit or feature that is constant over the text). Units are ranked by |r|; the sign
says whether the unit goes up (+) or down (-) with the feature.

The features of character t, from the text x_0 .. x_t alone:

    double_quote   inside "...": an odd number of '"' in x_0 .. x_t (the opening quote is inside,
                   the closing one outside)
    single_quote   inside '...' on the current line: a "'" opens a quote when a letter follows
                   and none precedes it, and closes an open one when it follows a non-space
                   and no letter follows; other "'" are apostrophes (don't, th'), and a
                   newline closes an open quote ('tis still opens one: the rule is a guess)
    in_brackets    inside (), [] or {}: depth > 0
    bracket_depth  the depth: openings minus closings so far, never below 0
    line_position  characters since the last newline (0 at the newline itself)
    line_start     x_t is the first character of a line (t = 0, or x_{t-1} is a newline)
    in_word        x_t is a letter or digit, or an apostrophe between two letters
    upper_case     x_t is an upper-case letter
    after 'c'      x_t is the character c (one feature per character asked for)

A feature that is constant over the text (no quotes at all, say) is left out, and so is
bracket_depth when brackets never nest (it is then in_brackets). So is a feature that never
falls over the text (5 '[' and no ']': a depth that only rises): it then correlates with any
unit that drifts along the text and says nothing of brackets.

Public API:
  text_features(text, after=DEFAULT_AFTER) -> {name: [N] float64}
  DESCRIPTIONS: {name: one line}; describe(name)
  correlations(features, states) -> {(layer, state): [F, H] float64}   (F in features' order)
  rank_units(features, states, per_feature=3) -> [{"feature", "description",
      "units": [{"layer", "state", "unit", "r"}, ...]}, ...]
"""

from __future__ import annotations

import numpy as np

DEFAULT_AFTER = (" ", "\n", ".", ",")
DEFAULT_PER_FEATURE = 3
_ROWS = 16384                   # characters per block of the correlation sums (bounds memory)

DESCRIPTIONS = {
    "double_quote": 'inside double quotes "..."',
    "single_quote": "inside single quotes '...'",
    "in_brackets": "inside brackets (), [], {}",
    "bracket_depth": "depth of brackets",
    "line_position": "position in the line",
    "line_start": "first character of a line",
    "in_word": "inside a word",
    "upper_case": "upper-case letter",
}
_OPEN, _CLOSE = "([{", ")]}"


def describe(name: str) -> str:
    """The one-line description of a feature name (after:X included)."""
    if name.startswith("after:"):
        return f"after {name[6:]!r}"
    return DESCRIPTIONS[name]


def text_features(text: str, after=DEFAULT_AFTER) -> dict[str, np.ndarray]:
    """The features of every character of text (module docstring): {name: [N] float64},
    non-constant ones only, in a fixed order; 'after:c' names for the characters of `after`."""
    n = len(text)
    dq = np.zeros(n)
    sq = np.zeros(n)
    depth = np.zeros(n)
    column = np.zeros(n)
    inside_dq = inside_sq = False
    level = col = 0
    for t, ch in enumerate(text):
        prev_alpha = t > 0 and text[t - 1].isalpha()
        next_alpha = t + 1 < n and text[t + 1].isalpha()
        if ch == '"':
            inside_dq = not inside_dq
        elif ch == "'" and not inside_sq:
            inside_sq = not prev_alpha and next_alpha          # 'word opens; th' does not
        elif ch == "'":
            inside_sq = text[t - 1].isspace() or next_alpha    # word' and word.' close
        elif ch == "\n":
            inside_sq = False
        if ch in _OPEN:
            level += 1
        elif ch in _CLOSE:
            level = max(0, level - 1)
        col = 0 if ch == "\n" else col + 1
        dq[t], sq[t], depth[t], column[t] = inside_dq, inside_sq, level, col
    chars = np.array(list(text)) if n else np.array([], dtype="<U1")
    starts = np.zeros(n)
    if n:
        starts[0] = 1
        starts[1:] = chars[:-1] == "\n"
        starts[chars == "\n"] = 0
    features = {
        "double_quote": dq, "single_quote": sq, "in_brackets": (depth > 0).astype(float),
        "bracket_depth": depth, "line_position": column, "line_start": starts,
        "in_word": _in_word(text), "upper_case": np.array([c.isupper() for c in text], float),
    }
    if n and depth.max() <= 1:
        del features["bracket_depth"]                  # the same as in_brackets
    for ch in dict.fromkeys(after):
        features[f"after:{ch}"] = (chars == ch).astype(float)
    return {name: f for name, f in features.items()
            if n and np.ptp(f) > 0 and (np.diff(f) < 0).any()}


def _in_word(text: str) -> np.ndarray:
    """1 where the character is alphanumeric or an apostrophe between two letters."""
    n = len(text)
    out = np.zeros(n)
    for t, ch in enumerate(text):
        out[t] = ch.isalnum() or (ch == "'" and 0 < t < n - 1 and text[t - 1].isalpha()
                                  and text[t + 1].isalpha())
    return out


def correlations(features: dict[str, np.ndarray], states) -> dict[tuple, np.ndarray]:
    """Pearson r of every feature with every unit: {key: [F, H]} for each states[key] [N, H].

    Sums are taken in float64 over blocks of rows, so memory beyond the inputs stays small.
    """
    f = np.stack(list(features.values()), axis=1) if features else np.zeros((0, 0))
    fc = f - f.mean(axis=0)
    f_norm = np.sqrt((fc * fc).sum(axis=0))                        # [F]
    out = {}
    for key, a in states.items():
        n, h = a.shape
        mean = np.zeros(h)
        for s in range(0, n, _ROWS):
            mean += a[s:s + _ROWS].sum(axis=0, dtype=np.float64)
        mean /= max(n, 1)
        cross = np.zeros((h, fc.shape[1]))
        sq = np.zeros(h)
        for s in range(0, n, _ROWS):
            block = a[s:s + _ROWS].astype(np.float64) - mean
            cross += block.T @ fc[s:s + _ROWS]          # this order is BLAS's fast case
            sq += (block * block).sum(axis=0)
        denom = np.outer(f_norm, np.sqrt(sq))
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.where(denom > 0, cross.T / np.where(denom > 0, denom, 1), 0.0)
        out[key] = np.clip(r, -1.0, 1.0)
    return out


def rank_units(features: dict[str, np.ndarray], states, per_feature: int = DEFAULT_PER_FEATURE
               ) -> list[dict]:
    """For each feature, the per_feature units with the largest |r| over all layers and state
    arrays (ties: lower layer, then array order, then index):
    [{"feature", "description", "units": [{"layer", "state", "unit", "r"}]}]."""
    corr = correlations(features, states)
    keys = list(corr)
    ranked = []
    for i, name in enumerate(features):
        rows = np.concatenate([corr[key][i] for key in keys]) if keys else np.zeros(0)
        owner = [(key, unit) for key in keys for unit in range(corr[key].shape[1])]
        order = np.argsort(-np.abs(rows), kind="stable")[:per_feature]
        units = [{"layer": owner[j][0][0], "state": owner[j][0][1], "unit": owner[j][1],
                  "r": float(rows[j])} for j in order]
        ranked.append({"feature": name, "description": describe(name), "units": units})
    return ranked
