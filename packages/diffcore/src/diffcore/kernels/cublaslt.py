"""cuBLASLt matmuls with GELU epilogues, called through ctypes (no compiled extension).

cuBLASLt can apply a bias and GELU (tanh approximation) in a matmul's epilogue and keep the GELU input
as an auxiliary output (``GELU_AUX_BIAS``), and in the backward multiply the input-gradient matmul by
GELU's derivative at that auxiliary input while reducing the bias gradient (``DGELU_BGRAD``). PyTorch
does not expose either, so an MLP otherwise pays one memory-bound pass over its 4x-wide hidden
activations for GELU forward, one for its backward and one for the bias gradient.

Row-major torch tensors are handed to cuBLASLt (column-major) transposed: ``Y = X @ W.T`` for
``X`` ``(M, K)`` and ``W`` ``(N, K)`` is the column-major product ``Y.T = op(W) @ X.T``.
:func:`available` says whether the library loads; the matmuls raise ``RuntimeError`` naming the failing
call. Used by :mod:`diffcore.kernels.mlp`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import threading
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["available", "linear_gelu_aux", "matmul_dgelu", "matmul_dgelu_bgrad"]

# Enum values from cublasLt.h / cublas_api.h / library_types.h (stable across CUDA 11-13).
_COMPUTE_32F = 68
_R_32F, _R_16F, _R_16BF = 0, 2, 14
_OP_N, _OP_T = 0, 1
_DESC_TRANSA, _DESC_TRANSB, _DESC_EPILOGUE = 3, 4, 7
_DESC_BIAS_POINTER, _DESC_AUX_POINTER, _DESC_AUX_LD = 8, 11, 12
_PREF_MAX_WORKSPACE_BYTES = 1
_EPILOGUE_GELU_AUX_BIAS = 32 | 128 | 4
_EPILOGUE_DGELU = 64 | 128
_EPILOGUE_DGELU_BGRAD = _EPILOGUE_DGELU | 16
_CANDIDATES = 8  # algorithms asked of the heuristic; the fastest on the first call is kept
_DTYPES = {torch.bfloat16: _R_16BF, torch.float16: _R_16F}
_WORKSPACE_BYTES = 32 * 2**20  # what cuBLAS itself uses on Hopper


class _HeuristicResult(ctypes.Structure):
    _fields_ = [
        ("algo", ctypes.c_uint64 * 8),
        ("workspace_size", ctypes.c_size_t),
        ("state", ctypes.c_int),
        ("waves_count", ctypes.c_float),
        ("reserved", ctypes.c_int * 4),
    ]


@functools.cache
def _library() -> ctypes.CDLL | None:
    """libcublasLt as loaded by torch (CUDA 13 or 12), or from the nvidia-cublas wheel; None if absent."""
    candidates = ["libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"]
    found = ctypes.util.find_library("cublasLt")
    if found:
        candidates.append(found)
    try:
        import nvidia.cublas  # the pip wheel torch depends on

        for root in nvidia.cublas.__path__:
            candidates += [str(p) for p in sorted((Path(root) / "lib").glob("libcublasLt.so*"))]
    except ImportError:
        pass
    for name in candidates:
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        vp, i32 = ctypes.c_void_p, ctypes.c_int
        lib.cublasLtMatmul.argtypes = [vp] * 14 + [ctypes.c_size_t, vp]
        lib.cublasLtMatrixLayoutCreate.argtypes = [vp, i32, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_int64]
        lib.cublasLtMatmulDescCreate.argtypes = [vp, i32, i32]
        lib.cublasLtMatmulDescSetAttribute.argtypes = [vp, i32, vp, ctypes.c_size_t]
        lib.cublasLtMatmulPreferenceSetAttribute.argtypes = [vp, i32, vp, ctypes.c_size_t]
        lib.cublasLtMatmulAlgoGetHeuristic.argtypes = [vp] * 7 + [i32, vp, vp]
        return lib
    return None


@torch.compiler.assume_constant_result
def available() -> bool:
    """Whether cuBLASLt can be called (a CUDA build of torch, a GPU, the library found)."""
    return torch.cuda.is_available() and _library() is not None


def _check(status: int, call: str) -> None:
    if status != 0:
        raise RuntimeError(f"cuBLASLt: {call} failed with status {status}")


_local = threading.local()


def _handle() -> ctypes.c_void_p:
    """This thread's cuBLASLt handle for the current GPU."""
    handles = _local.__dict__.setdefault("handles", {})
    device = torch.cuda.current_device()
    if device not in handles:
        handle = ctypes.c_void_p()
        _check(_library().cublasLtCreate(ctypes.byref(handle)), "cublasLtCreate")
        handles[device] = handle
    return handles[device]


@functools.cache
def _workspace(device: torch.device) -> Tensor:
    return torch.empty(_WORKSPACE_BYTES, dtype=torch.uint8, device=device)


def _set(setter, desc: ctypes.c_void_p, attr: int, value: ctypes._SimpleCData, what: str) -> None:
    _check(setter(desc, attr, ctypes.addressof(value), ctypes.sizeof(value)), what)


class _Plan:
    """Descriptors and the heuristic's algorithm for one (shape, dtype, epilogue), built once and kept."""

    def __init__(
        self, m: int, n: int, k: int, trans_a: int, lda: int, ldb: int, dtype: int, epilogue: int
    ) -> None:
        lib = _library()
        self.desc, self.a, self.b, self.d, pref = (ctypes.c_void_p() for _ in range(5))
        _check(
            lib.cublasLtMatmulDescCreate(ctypes.byref(self.desc), _COMPUTE_32F, _R_32F), "MatmulDescCreate"
        )
        set_desc = lib.cublasLtMatmulDescSetAttribute
        _set(set_desc, self.desc, _DESC_TRANSA, ctypes.c_int32(trans_a), "TRANSA")
        _set(set_desc, self.desc, _DESC_TRANSB, ctypes.c_int32(_OP_N), "TRANSB")
        _set(set_desc, self.desc, _DESC_EPILOGUE, ctypes.c_int32(epilogue), "EPILOGUE")
        # Column-major shapes: A is (n x k) after op, B (k x m), D (n x m).
        a_rows, a_cols = (k, n) if trans_a == _OP_T else (n, k)
        for layout, rows, cols, ld in ((self.a, a_rows, a_cols, lda), (self.b, k, m, ldb), (self.d, n, m, n)):
            _check(
                lib.cublasLtMatrixLayoutCreate(ctypes.byref(layout), dtype, rows, cols, ld), "LayoutCreate"
            )
        _set(set_desc, self.desc, _DESC_AUX_LD, ctypes.c_int64(n), "EPILOGUE_AUX_LD")  # aux laid out like D
        _check(lib.cublasLtMatmulPreferenceCreate(ctypes.byref(pref)), "PreferenceCreate")
        _set(
            lib.cublasLtMatmulPreferenceSetAttribute,
            pref,
            _PREF_MAX_WORKSPACE_BYTES,
            ctypes.c_uint64(_WORKSPACE_BYTES),
            "MAX_WORKSPACE_BYTES",
        )
        results = (_HeuristicResult * _CANDIDATES)()  # each starts with its algorithm, passed by address
        count = ctypes.c_int()
        # The heuristic looks at pointer alignment through these attributes; real pointers come per call.
        self.set_pointers(256, 256)
        _check(
            lib.cublasLtMatmulAlgoGetHeuristic(
                _handle(), self.desc, self.a, self.b, self.d, self.d, pref, _CANDIDATES, ctypes.addressof(results),
                ctypes.addressof(count),
            ),
            "MatmulAlgoGetHeuristic",
        )  # fmt: skip
        lib.cublasLtMatmulPreferenceDestroy(pref)
        self.candidates = [r for r in results[: count.value] if r.state == 0]
        if not self.candidates:
            raise RuntimeError(f"cuBLASLt: no algorithm for m={m} n={n} k={k} epilogue={epilogue}")
        self.result = self.candidates[0] if len(self.candidates) == 1 else None

    def set_pointers(self, bias: int, aux: int) -> None:
        set_desc = _library().cublasLtMatmulDescSetAttribute
        _set(set_desc, self.desc, _DESC_BIAS_POINTER, ctypes.c_void_p(bias), "BIAS_POINTER")
        _set(set_desc, self.desc, _DESC_AUX_POINTER, ctypes.c_void_p(aux), "EPILOGUE_AUX_POINTER")

    def run(self, a: Tensor, b: Tensor, d: Tensor, bias: Tensor | None, aux: Tensor) -> None:
        """``d = epilogue(op(a) @ b)``; on the first call outside graph capture, time each candidate."""
        self.set_pointers(0 if bias is None else bias.data_ptr(), aux.data_ptr())
        if self.result is None:
            if torch.cuda.is_current_stream_capturing():
                self.result = self.candidates[0]
            else:
                self.result = min(self.candidates, key=lambda r: self._time(r, a, b, d))
        self._launch(self.result, a, b, d)

    def _time(self, result: _HeuristicResult, a: Tensor, b: Tensor, d: Tensor, repeats: int = 3) -> float:
        self._launch(result, a, b, d)  # warm-up (the output is overwritten by the final call)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(repeats):
            self._launch(result, a, b, d)
        end.record()
        end.synchronize()
        return start.elapsed_time(end)

    def _launch(self, result: _HeuristicResult, a: Tensor, b: Tensor, d: Tensor) -> None:
        one, zero = ctypes.c_float(1.0), ctypes.c_float(0.0)
        workspace = _workspace(d.device)
        _check(
            _library().cublasLtMatmul(
                _handle(), self.desc, ctypes.addressof(one), a.data_ptr(), self.a, b.data_ptr(), self.b,
                ctypes.addressof(zero), d.data_ptr(), self.d, d.data_ptr(), self.d, ctypes.addressof(result),
                workspace.data_ptr(), _WORKSPACE_BYTES, torch.cuda.current_stream(d.device).cuda_stream,
            ),
            "cublasLtMatmul",
        )  # fmt: skip


_plans: dict[tuple, _Plan] = {}
_plans_lock = threading.Lock()


def _plan(*key: int) -> _Plan:
    with _plans_lock:
        if key not in _plans:
            _plans[key] = _Plan(*key)
        return _plans[key]


def _dtype_code(t: Tensor) -> int:
    if t.dtype not in _DTYPES:
        raise ValueError(f"cuBLASLt GELU epilogues: expected bfloat16 or float16 tensors, got {t.dtype}")
    return _DTYPES[t.dtype]


def linear_gelu_aux(x: Tensor, weight: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
    """``h = x @ weight.T + bias`` and ``gelu_tanh(h)`` in one matmul: ``(M, K)``, ``(N, K)``, ``(N,)``
    -> ``(gelu(h), h)``, each ``(M, N)``. All contiguous, one dtype (bf16 or fp16), on one GPU."""
    m, k = x.shape
    n = weight.shape[0]
    out = torch.empty(m, n, device=x.device, dtype=x.dtype)
    aux = torch.empty_like(out)
    with torch.cuda.device(x.device):
        plan = _plan(m, n, k, _OP_T, k, k, _dtype_code(x), _EPILOGUE_GELU_AUX_BIAS)
        plan.run(weight, x, out, bias, aux)
    return out, aux


def matmul_dgelu(grad_out: Tensor, weight: Tensor, gelu_input: Tensor) -> Tensor:
    """``(grad_out @ weight) * gelu_tanh'(gelu_input)`` in one matmul (``DGELU``): ``(M, N)``, ``(N, K)``,
    ``(M, K)`` -> ``(M, K)``, the MLP's gradient at its hidden pre-activation."""
    m, n = grad_out.shape
    k = weight.shape[1]
    grad_h = torch.empty(m, k, device=grad_out.device, dtype=grad_out.dtype)
    with torch.cuda.device(grad_out.device):
        plan = _plan(m, k, n, _OP_N, k, n, _dtype_code(grad_out), _EPILOGUE_DGELU)
        plan.run(weight, grad_out, grad_h, None, gelu_input)
    return grad_h


def matmul_dgelu_bgrad(grad_out: Tensor, weight: Tensor, gelu_input: Tensor) -> tuple[Tensor, Tensor]:
    """The MLP's backward through its second linear and GELU in one matmul.

    ``grad_out`` ``(M, N)`` (gradient of ``gelu(h) @ weight.T``), ``weight`` ``(N, K)``, ``gelu_input``
    ``h`` ``(M, K)`` -> ``(grad_h, grad_bias)``: ``grad_h = (grad_out @ weight) * gelu_tanh'(h)`` ``(M, K)``
    and its sum over rows ``(K,)`` (the first linear's bias gradient).
    """
    m, n = grad_out.shape
    k = weight.shape[1]
    grad_h = torch.empty(m, k, device=grad_out.device, dtype=grad_out.dtype)
    grad_bias = torch.empty(k, device=grad_out.device, dtype=grad_out.dtype)
    with torch.cuda.device(grad_out.device):
        # Column-major: grad_h.T (k x m) = weight.T (k x n; weight row-major (n, k) is col-major k x n) @ grad_out.T.
        plan = _plan(m, k, n, _OP_N, k, n, _dtype_code(grad_out), _EPILOGUE_DGELU_BGRAD)
        plan.run(weight, grad_out, grad_h, grad_bias, gelu_input)
    return grad_h, grad_bias
