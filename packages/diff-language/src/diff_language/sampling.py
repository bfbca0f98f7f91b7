"""Block-by-block generation with BD3-LM (Arriola et al. 2025, Alg. 2).

Blocks are generated left to right; inside a block diffcore's masked-diffusion samplers run with a
denoiser that attends to the block and to the finished blocks before it. Finished blocks enter an exact
KV cache (their keys and values are computed once, with the same block-causal attention as in training),
so each denoiser call costs one block instead of the whole prefix.

- Prompts and infilling: a *template* (B, T) holds given tokens and ``mask_id`` where tokens are wanted;
  given tokens are never changed. A masked span sees the given tokens of its own block and of every
  earlier block (block diffusion conditions on the right only inside a block; with ``L' = L`` it is
  MDLM's full infilling).
- Lengths beyond the training context: the attention window slides; the cache keeps the last
  ``seq_len - L'`` tokens (rotary embeddings make attention depend on relative positions only).
- The cache is preallocated (a ring of ``seq_len`` slots written in place), so the cached denoiser call has
  fixed shapes and, on CUDA with ``SamplingConfig(cuda_graph=True)``, runs as one replayed CUDA graph.
- EOS: generation stops after the block in which every sequence has produced ``eos_id``; each output is cut
  after its first EOS.
"""

from __future__ import annotations

import torch
from diffcore.discrete import (
    LogLinear,
    masked_ancestral_sample,
    masked_first_hitting_sample,
    subs_log_probs,
    time_grid,
)
from torch import Tensor

from diff_language.config import SamplingConfig
from diff_language.masks import block_causal_mask
from diff_language.models import BD3LM, RingKVCache

__all__ = ["SamplingConfig", "generate", "infill", "truncate_at_eos"]


class _Prefix:
    """The finished prefix kept as tokens; every call recomputes it (``use_kv_cache=False``, the reference)."""

    def __init__(self, model: BD3LM, batch: int, device: torch.device) -> None:
        self.model = model
        self.window = model.config.seq_len - model.config.block_size
        self.tokens = torch.zeros(batch, 0, dtype=torch.long, device=device)
        self.start = 0  # absolute position of self.tokens[:, 0]

    def logits(self, block: Tensor) -> Tensor:
        """Logits (B, L', V) of a noisy block given the finished prefix."""
        seq = torch.cat([self.tokens, block], dim=1)
        pos = torch.arange(self.start, self.start + seq.shape[1], device=seq.device)
        mask = block_causal_mask(seq.shape[1], self.model.config.block_size, device=seq.device)
        return self.model.forward_tokens(seq, pos, mask)[:, -block.shape[1] :]

    def append(self, block: Tensor) -> None:
        """Add a finished block; drop the oldest tokens beyond the window."""
        self.tokens = torch.cat([self.tokens, block], dim=1)
        excess = self.tokens.shape[1] - self.window
        if excess > 0:
            self.tokens = self.tokens[:, excess:]
            self.start += excess


class _CachedPrefix:
    """The finished prefix as an exact KV cache: a preallocated ring of ``seq_len`` slots (whole blocks).

    Block ``j`` writes its keys/values into slots ``(j mod n_blocks) L' ...`` and attends to the valid slots
    (the last ``seq_len / L' - 1`` finished blocks and itself). Every call has the same shapes and moves only
    device tensors in place (no concatenation, no host sync), so on CUDA it can run as one CUDA graph
    (``graph=True``): captured at the first call, replayed after.
    """

    def __init__(self, model: BD3LM, batch: int, device: torch.device, graph: bool) -> None:
        cfg = model.config
        self.model, self.block = model, cfg.block_size
        self.n_slots_blocks = cfg.seq_len // cfg.block_size
        dtype = next(model.parameters()).dtype
        self.cache = RingKVCache.empty(cfg, batch, cfg.seq_len, cfg.block_size, device, dtype)
        self.offsets = torch.arange(cfg.block_size, device=device)
        self.positions = self.offsets.clone()
        self.tokens = torch.zeros(batch, cfg.block_size, dtype=torch.long, device=device)
        self.use_graph = graph and device.type == "cuda"
        self.graphs: dict[bool, torch.cuda.CUDAGraph] = {}  # by head: denoising calls, cache writes
        self.outs: dict[bool, Tensor] = {}
        self.done = 0
        self._start_block()

    def _start_block(self) -> None:
        """Point slots, positions and the valid mask at block ``self.done`` (in place, on the device)."""
        j, size = self.done, self.block
        self.cache.slots.copy_(self.offsets + (j % self.n_slots_blocks) * size)
        self.positions.copy_(self.offsets + j * size)
        self.cache.valid[: min(j + 1, self.n_slots_blocks) * size] = True

    def _forward(self, head: bool) -> Tensor:
        return self.model.forward_tokens(self.tokens, self.positions, None, self.cache, head=head)

    def _capture(self, head: bool) -> None:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up (allocations, kernel selection) off the capture
            for _ in range(2):
                self._forward(head)
        torch.cuda.current_stream().wait_stream(side)
        self.graphs[head] = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graphs[head]):
            self.outs[head] = self._forward(head)

    def _run(self, block: Tensor, head: bool) -> Tensor:
        self.tokens.copy_(block)
        if not self.use_graph:
            return self._forward(head)
        if head not in self.graphs:
            self._capture(head)
        self.graphs[head].replay()
        return self.outs[head]  # overwritten by the next replay; the sampler turns it into log-probs first

    def logits(self, block: Tensor) -> Tensor:
        """Logits (B, L', V) of a noisy block given the cached prefix (writes the block's keys/values)."""
        return self._run(block, head=True)

    def append(self, block: Tensor) -> None:
        """Write the finished block's keys/values into its slots (no output layer) and move to the next block."""
        self._run(block, head=False)
        self.done += 1
        self._start_block()


def _denoise_block(
    model: BD3LM,
    ctx: _Prefix | _CachedPrefix,
    block: Tensor,
    config: SamplingConfig,
    generator: torch.Generator | None,
) -> Tensor:
    mask_id = model.mask_id

    def denoiser(x_t: Tensor, t: Tensor) -> Tensor:
        return subs_log_probs(ctx.logits(x_t), x_t, mask_id)

    schedule = LogLinear()
    if config.sampler == "first-hitting":
        return masked_first_hitting_sample(
            denoiser,
            block,
            schedule=schedule,
            mask_id=mask_id,
            temperature=config.temperature,
            top_p=config.top_p,
            generator=generator,
        )
    steps = config.steps or 2 * model.config.block_size
    return masked_ancestral_sample(
        denoiser,
        block,
        time_grid(steps),
        schedule=schedule,
        mask_id=mask_id,
        temperature=config.temperature,
        top_p=config.top_p,
        cache_predictions=True,
        generator=generator,
    )


@torch.no_grad()
def infill(
    model: BD3LM,
    template: Tensor,
    config: SamplingConfig | None = None,
    *,
    eos_id: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Fill every ``mask_id`` of ``template`` (B, T) block by block; given tokens stay. Returns (B, T') with T' <= T.

    With ``eos_id``, stops after the first block where every row has produced EOS at a generated position
    (the output is then shorter); rows are not cut here (see :func:`truncate_at_eos`).
    """
    config = config or SamplingConfig()
    if template.dim() != 2:
        raise ValueError(f"template: expected (B, T) token ids, got shape {tuple(template.shape)}")
    if int(template.max()) > model.mask_id or int(template.min()) < 0:
        raise ValueError(f"template: expected ids in [0, {model.mask_id}] (mask_id={model.mask_id})")
    block = model.config.block_size
    b, total = template.shape
    pad = (-total) % block
    work = torch.cat([template, template.new_full((b, pad), model.mask_id)], dim=1)
    ctx: _Prefix | _CachedPrefix = (
        _CachedPrefix(model, b, template.device, config.cuda_graph)
        if config.use_kv_cache
        else _Prefix(model, b, template.device)
    )
    # which blocks have anything to generate, read once (one host sync, not one per block)
    todo = (work == model.mask_id).view(b, -1, block).any(-1).any(0).tolist()
    done = torch.zeros(b, dtype=torch.bool, device=template.device)
    out = []
    for index, start in enumerate(range(0, work.shape[1], block)):
        noisy = work[:, start : start + block]
        generated = noisy == model.mask_id
        clean = _denoise_block(model, ctx, noisy, config, generator) if todo[index] else noisy
        out.append(clean)
        if eos_id is not None:
            done |= ((clean == eos_id) & generated).any(-1)
            if bool(done.all()):
                break
        if start + block < work.shape[1]:
            ctx.append(clean)
    return torch.cat(out, dim=1)[:, :total]


def generate(
    model: BD3LM,
    num_tokens: int,
    *,
    batch_size: int = 1,
    prompt: Tensor | None = None,
    config: SamplingConfig | None = None,
    eos_id: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Generate ``num_tokens`` new tokens after ``prompt`` (B, P) (or from nothing); returns (B, P + n), n <= num_tokens.

    Any length: past ``config.seq_len`` the attention window slides.
    """
    if num_tokens < 1:
        raise ValueError(f"num_tokens: expected >= 1, got {num_tokens}")
    device = next(model.parameters()).device
    if prompt is None:
        prompt = torch.zeros(batch_size, 0, dtype=torch.long, device=device)
    template = torch.cat([prompt, prompt.new_full((prompt.shape[0], num_tokens), model.mask_id)], dim=1)
    return infill(model, template, config, eos_id=eos_id, generator=generator)


def truncate_at_eos(tokens: Tensor, eos_id: int) -> list[list[int]]:
    """Rows of ``tokens`` (B, T) as lists cut just before the first ``eos_id``."""
    rows = []
    for row in tokens.tolist():
        rows.append(row[: row.index(eos_id)] if eos_id in row else row)
    return rows
