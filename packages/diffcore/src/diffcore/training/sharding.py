"""Sharded training: FSDP2 (``torch.distributed.fsdp.fully_shard``) through accelerate, for the Trainer.

With ``TrainConfig.sharding="fsdp2"`` and several processes, every block of the model (the classes in
``TrainConfig.fsdp_blocks``, or the model's ``_no_split_modules``: ``DiTBlock``, ``MMDiTBlock``, the U-Net's
``ResBlock`` and ``SpatialTransformer``, ``VideoDiTBlock``) becomes one FSDP unit and the root module one
more: each process keeps ``1/N`` of the parameters, gradients and AdamW moments, gathers a block's
parameters just before its forward (and backward) and reduce-scatters its gradients after (ZeRO-3;
Rajbhandari et al. 2020, Sec. 5; Zhao et al. 2023, PyTorch FSDP). accelerate builds the units
(:func:`fsdp_plugin`) and the Trainer keeps its one loop; this module holds what sharding changes around it:

- :class:`ShardedEMA`: the EMA of the weights kept as sharded as the weights (each process averages its own
  shards; the update is the same ``_foreach_lerp_`` as :class:`~diffcore.training.ema.EMA`).
- :func:`save_sharded` / :func:`load_sharded`: model, optimizer and EMA state through
  ``torch.distributed.checkpoint`` (every process writes its shards into ``sharded/`` of the checkpoint
  being assembled; the Trainer's staging folder and rename keep the write atomic). A load reshards to the
  current process count, one process included, sharded model or not.
- :func:`gather_full_state`: the full (unsharded) state, on the main process only, for ``save_pretrained``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from accelerate.utils import FullyShardedDataParallelPlugin
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, register_fsdp_forward_method
from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy
from torch.distributed.tensor import DTensor

from diffcore.training.checkpoint import SHARDED_DIR
from diffcore.training.ema import EMA, initial_weight_fraction, update_decay

_PRECISION_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def block_class_names(model: nn.Module, names: tuple[str, ...] | None = None) -> list[str]:
    """Names of the classes in ``model`` that become one FSDP unit each.

    ``names`` (default: ``model._no_split_modules``) may name a base class: every class in the model that
    has one of ``names`` in its MRO is returned (``VideoDiTBlock`` and ``FusedDiTBlock`` for
    ``"DiTBlock"``), since accelerate looks classes up by their exact name.

    Raises:
        ValueError: no names given and the model declares none, or a name matches no module.
    """
    wanted = tuple(names) if names is not None else tuple(getattr(model, "_no_split_modules", None) or ())
    if not wanted:
        raise ValueError(
            f"fsdp_blocks: {type(model).__name__} declares no _no_split_modules; name its block classes "
            "(TrainConfig.fsdp_blocks=('MyBlock',))"
        )
    found: dict[str, None] = {}
    matched: set[str] = set()
    for module in model.modules():
        hits = {c.__name__ for c in type(module).__mro__} & set(wanted)
        if hits:
            found[type(module).__name__] = None
            matched |= hits
    missing = [n for n in wanted if n not in matched]
    if missing:
        raise ValueError(f"fsdp_blocks: no module of class {missing} in {type(model).__name__}")
    return list(found)


def fsdp_plugin(
    model: nn.Module,
    *,
    blocks: tuple[str, ...] | None = None,
    mixed_precision: str = "no",
    activation_checkpointing: bool = False,
    reshard_after_forward: bool = True,
) -> FullyShardedDataParallelPlugin:
    """accelerate's FSDP2 plugin for ``model``: one unit per block (:func:`block_class_names`), sharded
    state dicts, and under ``bf16``/``fp16`` parameters gathered in that dtype with gradients reduced in
    float32 (the master weights and AdamW moments stay float32)."""
    dtype = _PRECISION_DTYPES.get(mixed_precision)
    policy = MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32) if dtype else None
    return FullyShardedDataParallelPlugin(
        fsdp_version=2,
        auto_wrap_policy="transformer_based_wrap",
        transformer_cls_names_to_wrap=block_class_names(model, blocks),
        reshard_after_forward=reshard_after_forward,
        activation_checkpointing=activation_checkpointing,
        mixed_precision_policy=policy,
        state_dict_type="SHARDED_STATE_DICT",
        cpu_ram_efficient_loading=False,
    )


def complete_plugin(plugin: FullyShardedDataParallelPlugin, model: nn.Module) -> None:
    """Fill in the block classes of a plugin from ``accelerate launch --config_file`` that names none:
    accelerate would look up ``_no_split_modules`` by exact class name, which misses subclasses (the
    fused DiT's ``FusedDiTBlock`` for ``DiTBlock``)."""
    policy = getattr(plugin.auto_wrap_policy, "func", plugin.auto_wrap_policy)
    named = plugin.transformer_cls_names_to_wrap is not None
    if not named and policy is transformer_auto_wrap_policy and getattr(model, "_no_split_modules", None):
        plugin.transformer_cls_names_to_wrap = block_class_names(model)


FORWARD_METHODS = ("forward_deferred",)
"""Methods other than ``forward`` that a model calls on its blocks (the fused DiT's deferred-residual
form); FSDP gathers a unit's parameters only around calls it knows of."""


def register_forward_methods(model: nn.Module, names: tuple[str, ...] = FORWARD_METHODS) -> int:
    """Make each FSDP unit's methods ``names`` gather and free its parameters as ``forward`` does
    (``torch.distributed.fsdp.register_fsdp_forward_method``); returns how many were registered."""
    count = 0
    for module in model.modules():
        if isinstance(module, FSDPModule):
            for name in names:
                if callable(getattr(module, name, None)):
                    register_fsdp_forward_method(module, name)
                    count += 1
    return count


def _local(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


class ShardedEMA:
    """The EMA of a sharded model's weights, kept sharded as they are (same rule as :class:`EMA`).

    Holds a detached copy of each parameter and buffer (a ``DTensor`` shard for sharded ones); its
    ``k``-th update is ``ema = d_k * ema + (1 - d_k) * theta`` on each process's local shards, with
    ``d_k`` from :func:`~diffcore.training.ema.update_decay`. Its :meth:`state_dict` has the keys of
    :meth:`EMA.state_dict` (``module.<name>`` and ``n_averaged``), so a sharded checkpoint's EMA loads into
    either class.

    Args:
        model: the sharded model (after ``accelerator.prepare``); the average starts from its weights.
        decay, warmup_steps, update_every, warmup: as for :class:`EMA`.
    """

    def __init__(
        self,
        model: nn.Module,
        decay: float,
        warmup_steps: int = 0,
        update_every: int = 1,
        *,
        warmup: bool = True,
    ) -> None:
        # The same argument checks as EMA, on a module with nothing to copy.
        EMA(nn.Module(), decay, warmup_steps, update_every, warmup=warmup)
        self.decay, self.warmup, self.warmup_steps, self.update_every = (
            decay,
            warmup,
            warmup_steps,
            update_every,
        )
        self.names = [n for n, _ in _named_tensors(model)]
        self.tensors = [t.detach().clone() for _, t in _named_tensors(model)]
        self._updates = 0

    @property
    def module(self) -> nn.Module:
        """Not available: the average is sharded over the processes (read ``<output_dir>/model_ema``)."""
        raise RuntimeError(
            "ema_model: under sharding='fsdp2' the EMA weights are sharded over the processes; load the "
            "saved <output_dir>/model_ema (from_pretrained) instead"
        )

    @property
    def num_updates(self) -> int:
        """How many times the average has been updated."""
        return self._updates

    @property
    def copy_updates(self) -> int:
        """How many of the first updates copy the weights (those at steps ``<= warmup_steps``)."""
        return self.warmup_steps // self.update_every

    def due(self, step: int) -> bool:
        """Whether the update after optimizer step ``step`` (1-based) is due."""
        return step % self.update_every == 0

    def undertrained_warning(self) -> str | None:
        """:meth:`EMA.undertrained_warning` for this average."""
        share = initial_weight_fraction(
            self._updates, self.decay, warmup=self.warmup, copy_updates=self.copy_updates
        )
        if share <= 0.05:
            return None
        return (
            f"ema: after {self._updates} updates the EMA weights are still {share:.1%} the weights training "
            f"started from (ema_decay={self.decay}, ema_warmup={self.warmup}); train longer or lower ema_decay"
        )

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Average in ``model``'s current weights (each process its own shards)."""
        decay = update_decay(
            self._updates + 1, self.decay, warmup=self.warmup, copy_updates=self.copy_updates
        )
        mine = [_local(t) for t in self.tensors]
        theirs = [_local(t.detach()) for _, t in _named_tensors(model)]
        if len(theirs) != len(mine):
            raise RuntimeError(f"ema: the model has {len(theirs)} tensors, the average {len(mine)}")
        if decay == 0.0:
            torch._foreach_copy_(mine, theirs)
        else:
            floats = [i for i, t in enumerate(mine) if t.is_floating_point()]
            torch._foreach_lerp_([mine[i] for i in floats], [theirs[i] for i in floats], 1.0 - decay)
            for i in set(range(len(mine))) - set(floats):  # integer buffers, as torch's EMA function does
                mine[i].copy_(mine[i] * decay + theirs[i] * (1.0 - decay))
        self._updates += 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        """``module.<name>`` -> the (sharded) average, and ``n_averaged`` (as :meth:`EMA.state_dict`)."""
        state = {f"module.{n}": t for n, t in zip(self.names, self.tensors, strict=True)}
        state["n_averaged"] = torch.tensor(self._updates, dtype=torch.long)
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore from :meth:`state_dict` (strict: every key must match)."""
        expected = set(self.state_dict())
        if set(state) != expected:
            raise KeyError(
                f"ema: state keys differ: missing {sorted(expected - set(state))[:5]}, "
                f"unexpected {sorted(set(state) - expected)[:5]}"
            )
        with torch.no_grad():
            for name, tensor in zip(self.names, self.tensors, strict=True):
                if state[f"module.{name}"] is not tensor:
                    tensor.copy_(state[f"module.{name}"])
        self._updates = int(state["n_averaged"].item())

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """The unsharded average (a collective: every process calls it), on the CPU."""
        return {
            n: (t.full_tensor() if isinstance(t, DTensor) else t).cpu()
            for n, t in zip(self.names, self.tensors)
        }


def _named_tensors(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """Parameters then persistent buffers, named as in the model's state dict (FSDP / checkpoint wrappers
    removed)."""
    keys = {_clean_name(k) for k in model.state_dict()}
    named = [*model.named_parameters(), *model.named_buffers()]
    return [(_clean_name(n), t) for n, t in named if _clean_name(n) in keys]


def _clean_name(name: str) -> str:
    return name.replace("_checkpoint_wrapped_module.", "").replace("_orig_mod.", "")


# ------------------------------------------------------------------------------------ checkpoints


def _state(model: nn.Module, optimizer: torch.optim.Optimizer, ema: Any) -> dict[str, Any]:
    model_state, optim_state = get_state_dict(model, optimizer)
    state: dict[str, Any] = {"model": model_state, "optimizer": optim_state}
    if ema is not None:
        state["ema"] = ema.state_dict()
    return state


def save_sharded(folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer, ema: Any = None) -> None:
    """Write the model, optimizer and EMA state into ``folder/sharded`` (every process its shards).

    A collective: every process calls it. ``folder`` is the checkpoint's staging folder; the caller
    publishes it (manifest, rename) once every process has written.
    """
    dcp.save(_state(model, optimizer, ema), checkpoint_id=folder / SHARDED_DIR)


def load_sharded(folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer, ema: Any = None) -> None:
    """Read ``folder/sharded`` into the model, optimizer and EMA, resharded to this process count.

    Works for a sharded model on any number of processes and for a plain model in one process (the
    2 -> 1 case); a collective when a process group is up. The optimizer's state is created first
    (a step with zero gradients at learning rate 0) so that every moment has a tensor to load into.
    """
    state = _state(model, optimizer, ema)
    dcp.load(state, checkpoint_id=folder / SHARDED_DIR)
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
    if ema is not None:
        ema.load_state_dict(state["ema"])


def gather_full_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's full state dict on the CPU of the main process (empty elsewhere); a collective."""
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
