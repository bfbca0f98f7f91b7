"""Attention masks of block diffusion (BD3-LM, Arriola et al. 2025, Sec. 3.2 and Fig. 2).

Training runs one forward pass over ``[x_t, x_0]`` (length ``2L``, blocks of size ``L'``). With ``b(i)`` the block
of token ``i`` within its half, the mask (True = may attend) is::

    [[M_BD,  M_OBC],      M_BD  (x_t -> x_t): block-diagonal,        b(q) == b(k)
     [ 0  ,  M_BC ]]      M_OBC (x_t -> x_0): offset block-causal,   b(q) >  b(k)
                          M_BC  (x_0 -> x_0): block-causal,          b(q) >= b(k)

so the noisy block ``b`` sees itself and the clean blocks before it, exactly as at sampling time.
``L' = 1`` makes this an autoregressive model, ``L' = L`` makes it MDLM.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["bd3_mask", "bd3_mask_mod", "block_causal_mask"]


def _check(seq_len: int, block_size: int) -> None:
    if block_size < 1 or seq_len % block_size != 0:
        raise ValueError(f"block_size: expected a divisor of seq_len={seq_len}, got {block_size}")


def bd3_mask_mod(seq_len: int, block_size: int) -> Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]:
    """The BD3-LM mask as a FlexAttention ``mask_mod(b, h, q_idx, kv_idx)`` over ``2 * seq_len`` positions."""
    _check(seq_len, block_size)

    def mask_mod(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        q_clean, k_clean = q_idx >= seq_len, kv_idx >= seq_len
        q_blk = (q_idx - q_clean.long() * seq_len) // block_size
        k_blk = (kv_idx - k_clean.long() * seq_len) // block_size
        diagonal = ~q_clean & ~k_clean & (q_blk == k_blk)
        offset_causal = ~q_clean & k_clean & (q_blk > k_blk)
        causal = q_clean & k_clean & (q_blk >= k_blk)
        return diagonal | offset_causal | causal

    return mask_mod


def bd3_mask(seq_len: int, block_size: int, device: torch.device | str = "cpu") -> Tensor:
    """Dense boolean BD3-LM mask (2L, 2L) for SDPA; True where a query may attend to a key."""
    idx = torch.arange(2 * seq_len, device=device)
    return bd3_mask_mod(seq_len, block_size)(idx, idx, idx[:, None], idx[None, :])


def block_causal_mask(length: int, block_size: int, device: torch.device | str = "cpu") -> Tensor:
    """Block-causal mask (length, length): token ``q`` sees token ``k`` when ``k // L' <= q // L'``."""
    blk = torch.arange(length, device=device) // block_size
    return blk[:, None] >= blk[None, :]
