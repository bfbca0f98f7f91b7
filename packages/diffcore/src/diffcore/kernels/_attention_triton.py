"""Triton kernels of :mod:`diffcore.kernels.attention` (imported only where Triton is installed).

Layouts: ``qkv`` ``(B, N, 3, H, DH)`` and ``d qkv`` contiguous, so a token's row of one head is ``3 * H * DH``
elements from the next; ``out`` and ``d out`` ``(B, N, H, DH)``; ``lse`` (base 2) and ``delta`` ``(B * H, N)``
float32. A head's ``DH`` columns are handled as a power-of-two part ``D0`` and a tail padded to ``D1``.
"""

import triton
import triton.language as tl


@triton.jit
def load_head(base, rows, n_rows, row_stride, D0: tl.constexpr, D1: tl.constexpr, DH: tl.constexpr):
    """Rows ``rows`` of one head as its power-of-two part ``(R, D0)`` and padded tail ``(R, D1)``."""
    r = rows[:, None]
    c0 = tl.arange(0, D0)[None, :]
    part0 = tl.load(base + r * row_stride + c0, mask=r < n_rows, other=0.0)
    if D1 > 0:
        c1 = D0 + tl.arange(0, D1)[None, :]
        part1 = tl.load(base + r * row_stride + c1, mask=(r < n_rows) & (c1 < DH), other=0.0)
    else:
        part1 = part0  # unused
    return part0, part1


@triton.jit
def store_head(base, rows, n_rows, row_stride, part0, part1, D0: tl.constexpr, D1: tl.constexpr,
               DH: tl.constexpr):  # fmt: skip
    r = rows[:, None]
    c0 = tl.arange(0, D0)[None, :]
    tl.store(base + r * row_stride + c0, part0.to(base.dtype.element_ty), mask=r < n_rows)
    if D1 > 0:
        c1 = D0 + tl.arange(0, D1)[None, :]
        tl.store(base + r * row_stride + c1, part1.to(base.dtype.element_ty), mask=(r < n_rows) & (c1 < DH))


@triton.jit
def scores(q0, q1, k0, k1, D1: tl.constexpr):
    s = tl.dot(q0, tl.trans(k0))
    if D1 > 0:
        s += tl.dot(q1, tl.trans(k1))
    return s


@triton.jit
def head_offsets(N: tl.constexpr, H, DH: tl.constexpr):
    """This program's ``b * H + h`` (program axis 1) and where its head starts in ``qkv`` / ``d qkv``
    ``(B, N, 3, H, DH)`` and in ``out`` / ``d out`` ``(B, N, H, DH)``."""
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)
    h = bh % H
    return bh, b * N * 3 * H * DH + h * DH, b * N * H * DH + h * DH


@triton.jit
def forward_kernel(
    QKV, OUT, LSE, N: tl.constexpr, H, scale_log2,
    DH: tl.constexpr, D0: tl.constexpr, D1: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    # qkv (B, N, 3, H, DH) contiguous: a token's row of one head is 3 * H * DH apart from the next.
    bh, qkv_offset, out_offset = head_offsets(N, H, DH)
    base = QKV + qkv_offset
    row_stride = 3 * H * DH
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    q0, q1 = load_head(base, rows, N, row_stride, D0, D1, DH)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc0 = tl.zeros([BLOCK_M, D0], dtype=tl.float32)
    acc1 = tl.zeros([BLOCK_M, D1 if D1 > 0 else 16], dtype=tl.float32)
    for start in range(0, N, BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N)
        k0, k1 = load_head(base + H * DH, cols, N, row_stride, D0, D1, DH)
        v0, v1 = load_head(base + 2 * H * DH, cols, N, row_stride, D0, D1, DH)
        s = scores(q0, q1, k0, k1, D1) * scale_log2
        s = tl.where(cols[None, :] < N, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        p = tl.math.exp2(s - m_new[:, None])
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, axis=1)
        p = p.to(v0.dtype)
        acc0 = acc0 * alpha[:, None] + tl.dot(p, v0)
        if D1 > 0:
            acc1 = acc1 * alpha[:, None] + tl.dot(p, v1)
        m_i = m_new
    store_head(OUT + out_offset, rows, N, H * DH, acc0 / l_i[:, None], acc1 / l_i[:, None], D0, D1, DH)
    tl.store(LSE + bh.to(tl.int64) * N + rows, m_i + tl.math.log2(l_i), mask=rows < N)  # base 2


@triton.jit
def load_row_stats(LSE, DELTA, bh, N: tl.constexpr, rows):
    """The forward's log-sum-exp (base 2) and ``rowsum(dO * O)`` of queries ``rows`` of head ``bh``."""
    offsets = bh.to(tl.int64) * N + rows
    lse = tl.load(LSE + offsets, mask=rows < N, other=float("inf"))
    return lse, tl.load(DELTA + offsets, mask=rows < N, other=0.0)


@triton.jit
def backward_dkdv_kernel(
    QKV, DOUT, LSE, DELTA, DQKV, N: tl.constexpr, H, scale_log2, scale,
    DH: tl.constexpr, D0: tl.constexpr, D1: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    bh, qkv_offset, out_offset = head_offsets(N, H, DH)
    base, dout_base = QKV + qkv_offset, DOUT + out_offset
    row_stride = 3 * H * DH
    cols = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    k0, k1 = load_head(base + H * DH, cols, N, row_stride, D0, D1, DH)
    v0, v1 = load_head(base + 2 * H * DH, cols, N, row_stride, D0, D1, DH)
    dk0 = tl.zeros([BLOCK_N, D0], dtype=tl.float32)
    dk1 = tl.zeros([BLOCK_N, D1 if D1 > 0 else 16], dtype=tl.float32)
    dv0 = tl.zeros([BLOCK_N, D0], dtype=tl.float32)
    dv1 = tl.zeros([BLOCK_N, D1 if D1 > 0 else 16], dtype=tl.float32)
    for start in range(0, N, BLOCK_M):
        rows = start + tl.arange(0, BLOCK_M)
        q0, q1 = load_head(base, rows, N, row_stride, D0, D1, DH)
        do0, do1 = load_head(dout_base, rows, N, H * DH, D0, D1, DH)
        lse, delta = load_row_stats(LSE, DELTA, bh, N, rows)
        # P^T (BLOCK_N, BLOCK_M) directly: keys as rows.
        st = scores(k0, k1, q0, q1, D1) * scale_log2
        pt = tl.math.exp2(st - lse[None, :])
        pt = tl.where(cols[:, None] < N, pt, 0.0)
        ptc = pt.to(do0.dtype)
        dv0 += tl.dot(ptc, do0)
        dpt = tl.dot(v0, tl.trans(do0))
        if D1 > 0:
            dv1 += tl.dot(ptc, do1)
            dpt += tl.dot(v1, tl.trans(do1))
        dst = (pt * (dpt - delta[None, :])).to(q0.dtype)
        dk0 += tl.dot(dst, q0)
        if D1 > 0:
            dk1 += tl.dot(dst, q1)
    dbase = DQKV + qkv_offset
    store_head(dbase + H * DH, cols, N, row_stride, dk0 * scale, dk1 * scale, D0, D1, DH)
    store_head(dbase + 2 * H * DH, cols, N, row_stride, dv0, dv1, D0, D1, DH)


@triton.jit
def backward_dq_kernel(
    QKV, DOUT, LSE, DELTA, DQKV, N: tl.constexpr, H, scale_log2, scale,
    DH: tl.constexpr, D0: tl.constexpr, D1: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    bh, qkv_offset, out_offset = head_offsets(N, H, DH)
    base, dout_base = QKV + qkv_offset, DOUT + out_offset
    row_stride = 3 * H * DH
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    q0, q1 = load_head(base, rows, N, row_stride, D0, D1, DH)
    do0, do1 = load_head(dout_base, rows, N, H * DH, D0, D1, DH)
    lse, delta = load_row_stats(LSE, DELTA, bh, N, rows)
    dq0 = tl.zeros([BLOCK_M, D0], dtype=tl.float32)
    dq1 = tl.zeros([BLOCK_M, D1 if D1 > 0 else 16], dtype=tl.float32)
    for start in range(0, N, BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N)
        k0, k1 = load_head(base + H * DH, cols, N, row_stride, D0, D1, DH)
        v0, v1 = load_head(base + 2 * H * DH, cols, N, row_stride, D0, D1, DH)
        s = scores(q0, q1, k0, k1, D1) * scale_log2
        p = tl.math.exp2(s - lse[:, None])
        p = tl.where(cols[None, :] < N, p, 0.0)
        dp = scores(do0, do1, v0, v1, D1)
        ds = (p * (dp - delta[:, None])).to(k0.dtype)
        dq0 += tl.dot(ds, k0)
        if D1 > 0:
            dq1 += tl.dot(ds, k1)
    dbase = DQKV + qkv_offset
    store_head(dbase, rows, N, row_stride, dq0 * scale, dq1 * scale, D0, D1, DH)


@triton.jit
def delta_kernel(
    OUT, DOUT, DELTA, N, H, n_rows, ROWS: tl.constexpr,
    DH: tl.constexpr, D0: tl.constexpr, D1: tl.constexpr,
):  # fmt: skip
    """``delta[b * H + h, n] = sum_d dO[b, n, h, d] * O[b, n, h, d]`` (float32) over the ``n_rows = B * N * H``
    rows ``(b, n, h)``, ``ROWS`` a program."""
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    o0, o1 = load_head(OUT, rows, n_rows, DH, D0, D1, DH)
    g0, g1 = load_head(DOUT, rows, n_rows, DH, D0, D1, DH)
    delta = tl.sum(o0.to(tl.float32) * g0.to(tl.float32), axis=1)
    if D1 > 0:
        delta += tl.sum(o1.to(tl.float32) * g1.to(tl.float32), axis=1)
    token = rows // H  # b * N + n
    h = rows % H
    b = token // N
    n = token % N
    tl.store(DELTA + (b * H + h).to(tl.int64) * N + n, delta, mask=rows < n_rows)
