"""The three places where the Trainer must use private accelerate / torch state, kept in one module.

Each has no public equivalent in the versions it was checked on, accelerate 1.15.0 and torch 2.9.1
(the workspace's lock; the GPU machines run torch 2.11). ``tests/test_train_compat.py`` fails
loudly, naming the attribute, when an upgrade removes one of them; the Trainer then needs a new way
here, and nowhere else.

1. :func:`reset_accelerate_state`: accelerate keeps the mixed-precision and gradient-accumulation
   settings in process-wide singletons (``AcceleratorState``, ``GradientState``). A second
   ``Accelerator`` in the same process with another ``mixed_precision`` raises "AcceleratorState has
   already been initialized and cannot be changed"; a pipeline that trains an autoencoder in float32
   and then a diffusion model in bf16 needs clean ones. accelerate offers only the private
   ``_reset_state`` static methods (its own test suite uses them).
2. :func:`skip_first_batches`: ``Accelerator.skip_first_batches`` (public) rebuilds a prepared loader
   without its ``non_blocking`` setting (a ``DataLoaderShard`` constructor argument that
   ``DataLoaderConfiguration(non_blocking=True)`` sets, stored as ``_non_blocking``), so the rest of a
   resumed epoch would copy every batch with a device sync. The setting is carried over.
3. :func:`dynamo_optimize_ddp`: torch.compile's DDP graph splitting is the dynamo setting
   ``torch._dynamo.config.optimize_ddp``; neither ``torch.compile`` nor ``torch.compiler`` exposes it.
4. :func:`fsdp_on_cpu`: accelerate turns its FSDP plugin on only for GPU-like process groups; with
   ``cpu=True`` it keeps ``DistributedType.MULTI_CPU`` (DDP over gloo) although FSDP2 (``fully_shard``)
   runs on CPU and gloo in torch 2.9. The state's ``distributed_type`` and ``fsdp_plugin`` are set as
   accelerate sets them for a GPU group, so CPU runs (the tests) take accelerate's own FSDP2 path.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

__all__ = ["dynamo_optimize_ddp", "fsdp_on_cpu", "reset_accelerate_state", "skip_first_batches"]

NON_BLOCKING_ATTRIBUTE = "_non_blocking"


def reset_accelerate_state(*, distributed: bool = False) -> None:
    """Forget accelerate's process-wide mixed-precision and accumulation settings before a new
    ``Accelerator`` is built. ``distributed=True`` also forgets the process group state
    (``PartialState``): for tests that build single-process Accelerators one after another."""
    AcceleratorState._reset_state(reset_partial_state=distributed)
    GradientState._reset_state()


def skip_first_batches(accelerator: Accelerator, loader: Any, num_batches: int) -> Any:
    """``accelerator.skip_first_batches(loader, num_batches)`` that keeps ``loader``'s ``non_blocking``
    batch copies (accelerate 1.15 drops the setting when it rebuilds the loader)."""
    rebuilt = accelerator.skip_first_batches(loader, num_batches=num_batches)
    if hasattr(loader, NON_BLOCKING_ATTRIBUTE):
        if hasattr(rebuilt, NON_BLOCKING_ATTRIBUTE):
            setattr(rebuilt, NON_BLOCKING_ATTRIBUTE, getattr(loader, NON_BLOCKING_ATTRIBUTE))
        else:
            warnings.warn(
                f"accelerate's rebuilt loader ({type(rebuilt).__name__}) has no {NON_BLOCKING_ATTRIBUTE}; "
                "the rest of this resumed epoch copies batches to the device blocking (slower, not wrong)",
                stacklevel=2,
            )
    return rebuilt


def dynamo_optimize_ddp(enabled: bool) -> contextlib.AbstractContextManager[Any]:
    """A context in which torch.compile splits compiled graphs at DDP's gradient buckets (``enabled``) or
    compiles one graph (dynamo reads the setting when it compiles a frame)."""
    return torch._dynamo.config.patch(optimize_ddp=enabled)


def fsdp_on_cpu(
    accelerator: Accelerator, plugin: FullyShardedDataParallelPlugin, mixed_precision: str
) -> None:
    """Make a multi-process CPU ``accelerator`` (gloo) prepare models with ``plugin`` (FSDP2), as it does
    on GPUs; a no-op unless its distributed type is ``MULTI_CPU``."""
    state = accelerator.state
    if state.distributed_type != DistributedType.MULTI_CPU:
        return
    state.distributed_type = DistributedType.FSDP
    state.fsdp_plugin = plugin
    if mixed_precision != "no":
        plugin.set_mixed_precision(mixed_precision)
