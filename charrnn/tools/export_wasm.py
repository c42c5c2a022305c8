"""The matrix-vector product of the exported page as a WebAssembly module with 128-bit SIMD,
assembled here from the listing below (no toolchain, no build step).

Why: the page's plain JavaScript product falls short of the 2,000 chars/s the demo model's
sampling should reach (docs/export.md has the figures); the page falls back to it where
WebAssembly SIMD is missing.

    matvec(w, b, x, out, rows, cols, has_bias)     (byte addresses in the imported memory)
        out[i] = sum_j w[i, j] x[j] (+ b[i])
        w float32 [rows, cols] row-major, b float32 [rows], x float64 [cols], out float64 [rows]

Each float32 weight is widened to float64 (f64x2.promote_low_f32x4) and the sums run in double
precision, eight columns a step in four two-lane sums, so the page computes what NumPy computes
in float64 from the same float32 weights, up to the order of the additions.
"""

from __future__ import annotations

# value types and the opcodes used (WebAssembly core 2.0, with the fixed-width SIMD proposal)
I32, F64, V128, VOID = 0x7F, 0x7C, 0x7B, 0x40
SIMD = 0xFD


def _uleb(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _sleb(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        done = (n == 0 and not byte & 0x40) or (n == -1 and byte & 0x40)
        out.append(byte | (0 if done else 0x80))
        if done:
            return bytes(out)


def _vec(items: list[bytes]) -> bytes:
    return _uleb(len(items)) + b"".join(items)


def _section(kind: int, body: bytes) -> bytes:
    return bytes([kind]) + _uleb(len(body)) + body


def _name(s: str) -> bytes:
    return _uleb(len(s)) + s.encode()


# instructions
def get(i): return b"\x20" + _uleb(i)
def put(i): return b"\x21" + _uleb(i)
def i32(n): return b"\x41" + _sleb(n)
def simd(op, *imm): return bytes([SIMD]) + _uleb(op) + bytes(imm)
def mem(align, offset=0): return _uleb(align) + _uleb(offset)


ADD, MUL, SHL, LT_U, EQZ = b"\x6a", b"\x6c", b"\x74", b"\x49", b"\x45"
BLOCK, LOOP, IF, END = b"\x02\x40", b"\x03\x40", b"\x04\x40", b"\x0b"
BR, BR_IF = b"\x0c", b"\x0d"
F32_LOAD, F64_LOAD, F64_STORE = b"\x2a" + mem(2), b"\x2b" + mem(3), b"\x39" + mem(3)
F64_PROMOTE, F64_ADD, F64_MUL, F64_ZERO = b"\xbb", b"\xa0", b"\xa2", b"\x44" + bytes(8)
V_LOAD = simd(0x00) + mem(0)             # unaligned 128-bit load
V_ZERO = simd(0x0C, *bytes(16))
V_HIGH = simd(0x0D, *range(8, 16), *range(8, 16))   # lanes 2, 3 of f32x4 into lanes 0, 1
PROMOTE, F64X2_ADD, F64X2_MUL = simd(0x5F), simd(0xF0), simd(0xF2)
LANE0, LANE1 = simd(0x21, 0), simd(0x21, 1)

# parameters 0..6: w, b, x, out, rows, cols, has_bias; locals 7..: as named
W, B, X, OUT, ROWS, COLS, HAS_BIAS = range(7)
I, J, WP, XP, END8, S = range(7, 13)          # END8: cols rounded down to a multiple of 8
ACC = range(13, 17)                           # four f64x2 sums: four independent chains
WV = 17
LOCALS = [(5, I32), (1, F64), (5, V128)]      # i, j, wp, xp, end8 | s | acc0-3, wv


def _loop(condition: list[bytes], body: list[bytes]) -> list[bytes]:
    """while (condition) { body }"""
    return [BLOCK, LOOP, *condition, EQZ, BR_IF, b"\x01", *body, BR, b"\x00", END, END]


def _eight_columns() -> list[bytes]:
    """Eight columns of a row: w[wp : wp + 32] (float32) as four f64x2 times x[xp : xp + 64]."""
    code = []
    for k in range(2):
        code += [get(WP), V_LOAD[:2] + mem(0, 16 * k), put(WV)]
        for half, lanes in ((0, []), (1, [get(WV), V_HIGH])):
            acc = ACC[2 * k + half]
            code += [get(acc), get(WV), *lanes, PROMOTE,
                     get(XP), V_LOAD[:2] + mem(0, 32 * k + 16 * half), F64X2_MUL, F64X2_ADD,
                     put(acc)]
    return code + [get(WP), i32(32), ADD, put(WP), get(XP), i32(64), ADD, put(XP),
                   get(J), i32(8), ADD, put(J)]


def _matvec_body() -> bytes:
    """The listing of matvec (see the module docstring)."""
    one_column = [get(S), get(WP), F32_LOAD, F64_PROMOTE, get(XP), F64_LOAD, F64_MUL, F64_ADD,
                  put(S), get(WP), i32(4), ADD, put(WP), get(XP), i32(8), ADD, put(XP),
                  get(J), i32(1), ADD, put(J)]
    row = [
        *[op for acc in ACC for op in (V_ZERO, put(acc))], i32(0), put(J), get(X), put(XP),
        *_loop([get(J), get(END8), LT_U], _eight_columns()),
        get(ACC[0]), get(ACC[1]), F64X2_ADD, get(ACC[2]), get(ACC[3]), F64X2_ADD, F64X2_ADD,
        put(ACC[0]), get(ACC[0]), LANE0, get(ACC[0]), LANE1, F64_ADD, put(S),
        *_loop([get(J), get(COLS), LT_U], one_column),          # the last cols mod 8
        get(HAS_BIAS), IF,
        get(S), get(B), get(I), i32(2), SHL, ADD, F32_LOAD, F64_PROMOTE, F64_ADD, put(S),
        END,
        get(OUT), get(I), i32(3), SHL, ADD, get(S), F64_STORE,
        get(I), i32(1), ADD, put(I),
    ]
    return b"".join([
        get(COLS), i32(-8), b"\x71", put(END8),          # i32.and: cols & ~7
        get(W), put(WP), i32(0), put(I),
        *_loop([get(I), get(ROWS), LT_U], row),
        END,
    ])


def module_bytes() -> bytes:
    """The module: imports its memory as e.m, exports matvec."""
    signature = b"\x60" + _vec([bytes([I32])] * 7) + _vec([])
    locals_ = _vec([_uleb(n) + bytes([t]) for n, t in LOCALS])
    code = locals_ + _matvec_body()
    return b"".join([
        b"\x00asm", b"\x01\x00\x00\x00",
        _section(1, _vec([signature])),
        _section(2, _vec([_name("e") + _name("m") + b"\x02\x00" + _uleb(1)])),
        _section(3, _vec([_uleb(0)])),
        _section(7, _vec([_name("matvec") + b"\x00" + _uleb(0)])),
        _section(10, _vec([_uleb(len(code)) + code])),
    ])
