"""Range: an interval a setting must lie in (the config's checks, the optimizers' declarations)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Range:
    """An interval; None is unbounded, *_open excludes the end point."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def contains(self, v: float) -> bool:
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        if self.hi is not None and (v >= self.hi if self.hi_open else v > self.hi):
            return False
        return True

    def describe(self) -> str:
        if self.hi is None:
            return f"{'>' if self.lo_open else '>='} {_num(self.lo)}"
        left, right = "(" if self.lo_open else "[", ")" if self.hi_open else "]"
        return f"in {left}{_num(self.lo)}, {_num(self.hi)}{right}"


def _num(v: float | None) -> str:
    """Format a bound without a trailing '.0' (1 rather than 1.0)."""
    return str(int(v)) if v is not None and float(v).is_integer() else str(v)


POSITIVE = Range(0, lo_open=True)
NON_NEGATIVE = Range(0)
AT_LEAST_1 = Range(1)
UNIT_OPEN_RIGHT = Range(0, 1, hi_open=True)  # [0, 1)
