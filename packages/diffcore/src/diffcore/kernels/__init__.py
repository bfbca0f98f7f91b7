"""Everything CUDA-specific: fused operators in Triton and cuBLASLt, and CUDA-graph replay.

Ops only: these modules import torch, Triton (lazily, where installed) and nothing of diffcore's networks;
``diffcore.nn`` builds its fast layers on them (``nn/dit_fused.py``), never the other way round. Each fused
operator has a plain-torch reference beside it (``*_reference``), which it falls back to where its kernel
cannot run (CPU, no Triton, no cuBLASLt, unsupported dtype) and which the tests check it against.

- :mod:`~diffcore.kernels.adaln`: gated residual + LayerNorm + adaLN modulation as one Triton kernel
  forward and one backward (:func:`adaln_modulate`).
- :mod:`~diffcore.kernels.attention`: self-attention straight from a fused q/k/v projection, FlashAttention-2
  style in Triton (:func:`qkv_attention`); its kernels are in ``_attention_triton.py``.
- :mod:`~diffcore.kernels.mlp`: the transformer MLP with bias and GELU in cuBLASLt's matmul epilogue
  (:func:`gelu_mlp`), through the ctypes binding :mod:`~diffcore.kernels.cublaslt`.
- ``_custom_ops.py``: each operator written once, reached as a ``torch.library`` custom op under
  ``torch.compile`` and as a plain ``autograd.Function`` eagerly.
- :mod:`~diffcore.kernels.cuda_graphs`: :class:`GraphedCall`, a module's training forward and backward
  replayed from CUDA graphs.

:func:`triton_runs_on` says whether the Triton kernels run on a tensor (CUDA and Triton installed, or float32
on the CPU under Triton's interpreter, ``TRITON_INTERPRET=1``, which the tests use).
"""

from diffcore.kernels._triton import triton_runs_on
from diffcore.kernels.adaln import adaln_modulate, adaln_reference
from diffcore.kernels.attention import qkv_attention, qkv_attention_reference
from diffcore.kernels.cuda_graphs import GraphedCall
from diffcore.kernels.mlp import gelu_mlp, gelu_mlp_reference, gelu_mlp_runs_on

__all__ = [
    "GraphedCall",
    "adaln_modulate",
    "adaln_reference",
    "gelu_mlp",
    "gelu_mlp_reference",
    "gelu_mlp_runs_on",
    "qkv_attention",
    "qkv_attention_reference",
    "triton_runs_on",
]
