"""The matrix-vector product of the exported page as a WebAssembly module with 128-bit SIMD,
assembled here from the listing below (no toolchain, no build step).

Why: the page's plain JavaScript product falls short of the 2,000 chars/s the demo model's
sampling should reach (docs/export.md has the figures); the page falls back to it where
WebAssembly SIMD is missing.

    matvec(w, b, x, out, rows, cols, has_bias)     (byte addresses in the imported memory)
        out[i] = sum_j w[i, j] x[j] (+ b[i])
        w float32 [rows, cols] row-major, b float32 [rows], x float64 [cols], out float64 [rows]

Each float32 weight is widened to float64 (f64x2.promote_low_f32x4) and the sums run in double
precision, two rows and eight columns a step in four two-lane sums a row, so the page computes
what NumPy computes in float64 from the same float32 weights, up to the order of the additions.
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
I, J, XP, END8, ROW_BYTES = range(7, 12)      # END8: cols rounded down to a multiple of 8
WP = (12, 13)                                 # the two rows' weight pointers
S = (14, 15)                                  # the two rows' sums
ACC = ((16, 17, 18, 19), (20, 21, 22, 23))    # four f64x2 sums a row: independent chains
WV, XA, XB = 24, 25, 26
LOCALS = [(7, I32), (2, F64), (11, V128)]


def _loop(condition: list[bytes], body: list[bytes]) -> list[bytes]:
    """while (condition) { body }"""
    return [BLOCK, LOOP, *condition, EQZ, BR_IF, b"\x01", *body, BR, b"\x00", END, END]


def _at(code: bytes, offset: int) -> bytes:
    """A load or store instruction `code` (opcode and memarg) with its offset set."""
    prefix = 2 if code[0] == SIMD else 1           # the opcode, then the alignment byte
    return code[:prefix + 1] + _uleb(offset)


def _eight_columns(rows: int) -> list[bytes]:
    """Eight columns of `rows` rows: x[xp : xp + 64] (float64) loaded once for all of them, each
    row's w[wp : wp + 32] (float32) as four f64x2."""
    code = []
    for k in range(2):
        code += [get(XP), _at(V_LOAD, 32 * k), put(XA), get(XP), _at(V_LOAD, 32 * k + 16), put(XB)]
        for r in range(rows):
            code += [get(WP[r]), _at(V_LOAD, 16 * k), put(WV)]
            for half, lanes, x in ((0, [], XA), (1, [get(WV), V_HIGH], XB)):
                acc = ACC[r][2 * k + half]
                code += [get(acc), get(WV), *lanes, PROMOTE, get(x), F64X2_MUL, F64X2_ADD, put(acc)]
    for r in range(rows):
        code += [get(WP[r]), i32(32), ADD, put(WP[r])]
    return code + [get(XP), i32(64), ADD, put(XP), get(J), i32(8), ADD, put(J)]


def _one_column(rows: int) -> list[bytes]:
    code = []
    for r in range(rows):
        code += [get(S[r]), get(WP[r]), F32_LOAD, F64_PROMOTE, get(XP), F64_LOAD, F64_MUL,
                 F64_ADD, put(S[r]), get(WP[r]), i32(4), ADD, put(WP[r])]
    return code + [get(XP), i32(8), ADD, put(XP), get(J), i32(1), ADD, put(J)]


def _rows(rows: int) -> list[bytes]:
    """Rows i .. i + rows - 1 (1 or 2: two share each load of x), then i += rows; wp[0] starts
    at row i and ends at the next row not done."""
    code = [op for r in range(rows) for acc in ACC[r] for op in (V_ZERO, put(acc))]
    code += [i32(0), put(J), get(X), put(XP)]
    if rows == 2:
        code += [get(WP[0]), get(ROW_BYTES), ADD, put(WP[1])]
    code += _loop([get(J), get(END8), LT_U], _eight_columns(rows))
    for r in range(rows):
        a = ACC[r]
        code += [get(a[0]), get(a[1]), F64X2_ADD, get(a[2]), get(a[3]), F64X2_ADD, F64X2_ADD,
                 put(a[0]), get(a[0]), LANE0, get(a[0]), LANE1, F64_ADD, put(S[r])]
    code += _loop([get(J), get(COLS), LT_U], _one_column(rows))       # the last cols mod 8
    for r in range(rows):
        code += [get(HAS_BIAS), IF, get(S[r]), get(B), get(I), i32(2), SHL, ADD,
                 _at(F32_LOAD, 4 * r), F64_PROMOTE, F64_ADD, put(S[r]), END,
                 get(OUT), get(I), i32(3), SHL, ADD, get(S[r]), _at(F64_STORE, 8 * r)]
    if rows == 2:
        code += [get(WP[1]), put(WP[0])]
    return code + [get(I), i32(rows), ADD, put(I)]


def _matvec_body() -> bytes:
    """The listing of matvec (see the module docstring): rows two at a time, then the last."""
    return b"".join([
        get(COLS), i32(-8), b"\x71", put(END8),          # i32.and: cols & ~7
        get(COLS), i32(2), SHL, put(ROW_BYTES),
        get(W), put(WP[0]), i32(0), put(I),
        *_loop([get(I), i32(1), ADD, get(ROWS), LT_U], _rows(2)),
        *_loop([get(I), get(ROWS), LT_U], _rows(1)),
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
