"""The fast form of DiT's layers: the same parameters and math as :mod:`diffcore.nn.dit`, run through
:mod:`diffcore.kernels` on CUDA (``DiTConfig.fused_kernels``).

Each class here subclasses its plain counterpart, so the parameters, the state-dict keys and the
initialisation are the same and a checkpoint loads into either form. The math is the paper's block
(:class:`~diffcore.nn.dit.DiTBlock`), computed differently:

- :class:`FusedAttention`: without mask, RoPE or QK-norm, attention straight from the q/k/v projection's
  ``(B, N, 3, H, Dh)`` output (:func:`~diffcore.kernels.attention.qkv_attention`, Triton).
- :class:`FusedMlp`: the first linear's bias and GELU in cuBLASLt's matmul epilogue for bf16/fp16 CUDA
  tensors (:func:`~diffcore.kernels.mlp.gelu_mlp`).
- :class:`FusedDiTBlock`: every gated residual add and the LayerNorm and modulation after it as one Triton
  kernel (:func:`~diffcore.kernels.adaln.adaln_modulate`). The paper's block reads

      x = x + gate_msa * attn(modulate(norm1(x), shift_msa, scale_msa))
      x = x + gate_mlp * mlp(modulate(norm2(x), shift_mlp, scale_mlp))

  and the kernel computes ``x' = x + gate * y`` together with the next ``modulate(norm(x'), shift, scale)``.
  So the block's last residual (``x + gate_mlp * mlp_out``) is left *pending* and added inside the next
  block's first adaLN kernel, or the final layer's (:meth:`FusedDiTBlock.forward_deferred`,
  :func:`forward_fused`): the "deferred residual" form.
- :class:`FusedFinalLayer`: the final adaLN step, taking the last block's pending residual.

Where the kernels cannot run (:func:`~diffcore.kernels.triton_runs_on`: CPU, no Triton) these modules run
their plain parent's forward. ``tests/test_dit_fused.py`` checks both forms equal: outputs, gradients and
state-dict keys.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from diffcore.kernels import adaln_modulate, gelu_mlp, qkv_attention, triton_runs_on
from diffcore.nn.attention import Attention, Rope
from diffcore.nn.dit import DiTBlock, FinalLayer, Mlp

if TYPE_CHECKING:
    from diffcore.nn.dit import DiT

Pending = tuple[Tensor, Tensor]
"""A gated residual ``(y, gate)`` not yet added: the tokens are ``x + gate * y``."""


class FusedAttention(Attention):
    """:class:`~diffcore.nn.attention.Attention` that attends straight from the q/k/v projection in Triton
    when there is no mask, RoPE or QK-norm (SDPA where the kernels do not run): ``(B, N, D)`` -> ``(B, N, D)``."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, qk_norm: bool = False) -> None:
        super().__init__(dim, num_heads, qkv_bias=qkv_bias, qk_norm=qk_norm)
        self.qk_norm = qk_norm

    def forward(self, x: Tensor, mask: Tensor | None = None, rope: Rope | None = None) -> Tensor:
        if mask is not None or rope is not None or self.qk_norm or not triton_runs_on(x):
            return super().forward(x, mask, rope)
        b, n, _ = x.shape
        qkv = self.qkv.qkv(x).view(b, n, 3, self.qkv.num_heads, self.qkv.head_dim)
        return self.proj(qkv_attention(qkv))


class FusedMlp(Mlp):
    """:class:`~diffcore.nn.dit.Mlp` with GELU in cuBLASLt's epilogue for bf16/fp16 CUDA inputs (under
    autocast); elsewhere, and for layers wrapped by an adapter (PEFT's LoRA), the plain ops."""

    def forward(self, x: Tensor) -> Tensor:
        """The MLP with bias and tanh-GELU in cuBLASLt's epilogue (:func:`diffcore.kernels.mlp.gelu_mlp`);
        plain torch where the kernel cannot run."""
        return gelu_mlp(x, self.fc1, self.fc2)


class FusedDiTBlock(DiTBlock):
    """:class:`~diffcore.nn.dit.DiTBlock` in the deferred-residual form (see the module docstring).

    ``forward(x, c, rope)`` equals the plain block's; :meth:`forward_deferred` is what :func:`forward_fused`
    chains. Double backward and forward-mode AD are not supported where the kernels run.
    """

    attention_class = FusedAttention
    mlp_class = FusedMlp

    def forward(self, x: Tensor, c: Tensor, rope: Rope | None = None) -> Tensor:
        """Equal to :meth:`DiTBlock.forward`; on CUDA (or Triton's interpreter) through the fused adaLN and
        attention kernels, the plain block elsewhere."""
        if not triton_runs_on(x):
            return super().forward(x, c, rope)
        x, (y, gate) = self.forward_deferred(x, None, c, rope)
        return torch.addcmul(x, gate, y)

    def forward_deferred(
        self, x: Tensor, pending: Pending | None, c: Tensor, rope: Rope | None = None
    ) -> tuple[Tensor, Pending]:
        """The block with its last gated residual left to the caller.

        ``x``: ``(B, N, D)``, with ``pending = (y, gate)`` of the block before still to add (None: nothing
        pending); returns ``(x', (mlp_out, gate_mlp))``, the tokens after the attention branch and this block's
        own pending residual, so that each residual add runs inside the next adaLN kernel.
        """
        mod = self.modulation(c)[:, None]  # (B, 1, 6D): per-sample shift, scale, gate of both branches
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mod.chunk(6, dim=-1)
        y, gate = pending if pending is not None else (None, None)
        # x = x + gate * y (the block before); h = modulate(norm1(x), shift_msa, scale_msa)
        x, h = adaln_modulate(x, shift_msa, scale_msa, residual=y, gate=gate, eps=self.norm1.eps)
        # x = x + gate_msa * attn(h); h = modulate(norm2(x), shift_mlp, scale_mlp)
        x, h = adaln_modulate(
            x, shift_mlp, scale_mlp, residual=self.attn(h, rope=rope), gate=gate_msa, eps=self.norm2.eps
        )
        return x, (self.mlp(h), gate_mlp)


class FusedFinalLayer(FinalLayer):
    """:class:`~diffcore.nn.dit.FinalLayer` whose adaLN step is one kernel that also adds the last block's
    pending residual: ``x`` ``(B, N, D)``, ``c`` ``(B, D)``, ``pending`` ``(y, gate)`` or None."""

    def forward(self, x: Tensor, c: Tensor, pending: Pending | None = None) -> Tensor:
        """Equal to :meth:`FinalLayer.forward` after adding a ``pending`` gated residual ``(y, gate)`` left by
        the last fused block, in one adaLN kernel where Triton runs."""
        if not triton_runs_on(x):
            if pending is not None:
                x = torch.addcmul(x, pending[1], pending[0])
            return super().forward(x, c)
        shift, scale = self.modulation(c)[:, None].chunk(2, dim=-1)
        y, gate = pending if pending is not None else (None, None)
        _, h = adaln_modulate(x, shift, scale, residual=y, gate=gate, eps=self.norm.eps)
        return self.linear(h)


def forward_fused(
    model: DiT, h: Tensor, c: Tensor, rope: Rope | None, control: list[Tensor] | None
) -> Tensor:
    """A fused DiT's blocks and final layer, each residual add deferred into the next adaLN kernel.

    ``h``: ``(B, N, D)`` embedded tokens, ``c``: ``(B, D)`` after SiLU -> ``(B, N, prod(patch) * out_channels)``,
    what ``model.final_layer(blocks(h))`` gives. A control residual needs the block's output whole: there the
    pending residual is added first.
    """
    pending = None
    for i, block in enumerate(model.blocks):
        if model.checkpointing:
            h, pending = checkpoint(block.forward_deferred, h, pending, c, rope, use_reentrant=False)
        else:
            h, pending = block.forward_deferred(h, pending, c, rope)
        if control is not None and i < len(control):
            h = torch.addcmul(h, pending[1], pending[0]) + control[i]
            pending = None
    return model.final_layer(h, c, pending)
