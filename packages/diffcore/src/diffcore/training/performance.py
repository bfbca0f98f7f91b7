"""The Trainer's model options for speed and memory: float8 linear layers and activation checkpointing.

Applied once, to the plain model on its device, before the optimizer, DDP / FSDP2 and ``torch.compile`` see it
(:class:`~diffcore.training.Trainer`). Neither changes the parameters or the state-dict keys, so checkpoints,
resume, EMA and saved models are those of the plain model.
"""

from __future__ import annotations

import torch
from torch import nn

from diffcore.precision.float8 import Float8Plan, float8_for_training, restore_linear
from diffcore.training.config import TrainConfig

__all__ = ["apply_model_options", "enable_activation_checkpointing", "plain_copy"]


def apply_model_options(
    model: nn.Module, config: TrainConfig, device: torch.device, *, sharded: bool = False
) -> Float8Plan | None:
    """Apply ``config.activation_checkpointing`` (unless ``sharded``: FSDP2's plugin checkpoints its units then)
    and ``config.float8`` to ``model`` in place; returns the float8 plan (``None`` when float8 is off or cannot
    run here, which warns once)."""
    if config.activation_checkpointing and not sharded:
        enable_activation_checkpointing(model)
    return float8_for_training(model, config.float8, device)


def enable_activation_checkpointing(model: nn.Module, enabled: bool = True) -> list[str]:
    """Set ``gradient_checkpointing = enabled`` on every module of ``model`` that has that switch (the core's
    backbones recompute each block in the backward when it is on, in training mode); returns their names.

    Raises:
        ValueError: no module of ``model`` has a ``gradient_checkpointing`` switch.
    """
    names = [name for name, m in model.named_modules() if hasattr(m, "gradient_checkpointing")]
    if not names:
        raise ValueError(
            f"activation_checkpointing: {type(model).__name__} has no module with a gradient_checkpointing "
            "switch (the core's DiT, MMDiT, U-Net, ControlNet and the video DiT have one)"
        )
    for name in names:
        model.get_submodule(name).gradient_checkpointing = enabled
    return names


def plain_copy(model: nn.Module) -> nn.Module:
    """A model that is not trained any more (the EMA average) made plain for sampling and saving: float8
    layers back to ``nn.Linear`` (same parameters) and activation checkpointing off. In place; returns it."""
    restore_linear(model)
    for module in model.modules():
        if hasattr(module, "gradient_checkpointing"):
            module.gradient_checkpointing = False
    return model
