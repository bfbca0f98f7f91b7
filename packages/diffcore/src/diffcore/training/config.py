"""The training configuration: one dataclass, validated when it is built.

Steps count optimizer updates (one update = ``grad_accum_steps`` micro-batches of the user's
DataLoader on every process), so ``warmup_steps``, ``log_every``, ``checkpoint_every`` and the
EMA settings are all in the same unit.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Literal

from diffcore.device import DEVICES, Device
from diffcore.precision.recipes import FLOAT8_RECIPES, Float8Recipe

LrSchedule = Literal["constant", "cosine"]
MixedPrecision = Literal["no", "bf16", "fp16"]
Sharding = Literal["none", "fsdp2"]

_SCHEDULES = ("constant", "cosine")
_PRECISIONS = ("no", "bf16", "fp16")
_SHARDINGS = ("none", "fsdp2")


@dataclass
class TrainConfig:
    """Everything the :class:`~diffcore.training.Trainer` needs besides the model, objective and data.

    The batch size is the user's DataLoader's; the effective batch of one optimizer step is
    ``loader.batch_size * grad_accum_steps * num_processes``.

    Attributes:
        steps: total optimizer steps to train for (a resumed run continues up to this number).
        lr: peak learning rate of the default AdamW (ignored when an optimizer is passed, whose
            own ``lr`` is then the peak).
        weight_decay: AdamW's decoupled weight decay (Loshchilov & Hutter, 2019).
        betas: AdamW's ``(beta1, beta2)``.
        eps: AdamW's epsilon.
        lr_schedule: ``"constant"`` or ``"cosine"`` (Loshchilov & Hutter 2017, SGDR eq. 5, one cycle
            without restarts); both start with ``warmup_steps`` of linear warmup.
        warmup_steps: steps of linear warmup from ``lr / warmup_steps`` to ``lr``.
        min_lr_ratio: the cosine schedule decays to ``min_lr_ratio * lr`` at ``steps``.
        grad_accum_steps: micro-batches accumulated per optimizer step (``accelerator.accumulate``).
        max_grad_norm: clip the global gradient 2-norm to this value; ``None`` disables clipping
            (the norm is still measured and logged).
        mixed_precision: ``"no"``, ``"bf16"`` (CPU or GPU) or ``"fp16"`` (GPU only, with a loss scaler).
        ema_decay: decay of the exponential moving average of the weights (the largest decay, with
            ``ema_warmup``); ``None`` disables EMA.
        ema_warmup: grow the EMA decay with the number of updates, ``min(ema_decay, (1 + n) / (10 + n))``
            at the ``n``-th update (LDM's ``LitEma``; diffusers' ``EMAModel`` default), so the average
            forgets the random initialisation within its first updates. ``False``: every update uses
            ``ema_decay`` (then 300 updates at 0.999 still hold 74% of the initialisation; a run that ends
            with more than 5% left warns).
        ema_warmup_steps: during the first ``ema_warmup_steps`` steps the EMA copies the weights
            (decay 0); the ``ema_warmup`` count starts after them.
        ema_update_every: update the EMA every this many optimizer steps.
        log_every: write one JSONL / TensorBoard record every this many steps.
        checkpoint_every: write a resumable checkpoint every this many steps (``None``: only at the end).
        keep_last: keep this many most recent checkpoints (older ones are deleted).
        output_dir: where ``checkpoints/``, ``log.jsonl``, ``tensorboard/``, ``model/`` and
            ``model_ema/`` are written.
        resume: ``None``: start a fresh run (refused when ``output_dir`` already holds a run's
            checkpoints, log or models); ``"latest"``: continue from the newest complete checkpoint under
            ``output_dir`` (an error when there is none); ``"auto"``: the newest if any, else fresh; or the
            path of a ``checkpoint-<step>`` folder. From the command line: ``--set train.resume=latest``.
        seed: seeds the data order (the shuffle of epoch ``e`` is drawn from ``seed + e``) and the
            objective's ``generator`` (re-seeded from ``(seed, process index, micro-batch index)`` before
            each micro-batch). The global RNGs are not seeded: what draws from them during training
            (dropout, an objective that ignores its generator) follows the caller's RNG state, so seed it in
            the script for a reproducible run (under several processes, seed each differently for
            independent dropout masks). Checkpoints save those states and a resume restores them.
        progress_bar: show progress on standard error (main process only): a bar with the loss, steps/s
            and ETA on a terminal; a plain line every ``log_every`` steps when standard error is not one.
        tensorboard: log scalars to TensorBoard through accelerate's tracker. Needs the ``tensorboard``
            extra (``pip install 'diffcore[tensorboard]'``); without it the Trainer warns once and logs to
            ``log.jsonl`` only.
        device: ``"auto"`` (a GPU when one is present, else the CPU), ``"cpu"`` (even when a GPU is present)
            or ``"cuda"`` (an error without one). Under ``accelerate launch`` each process takes its own GPU.
        compile: compile the model with ``torch.compile`` (inductor) through accelerate's dynamo plugin.
            The first steps spend time compiling; later steps issue fused kernels instead of one Python
            call per operator, which is what keeps a small model from being host-bound on a GPU. When
            ``False``, accelerate's own setting applies (``accelerate launch --dynamo_backend ...``).
            Checkpoints and saved models hold the plain model's weights either way.
        compile_ddp_optimizer: with ``compile`` under DDP (several processes), let torch.compile's
            DDPOptimizer split the compiled graph at DDP's gradient buckets, so that each bucket's all-reduce
            overlaps the rest of the backward (torch's default, ``torch._dynamo.config.optimize_ddp``).
            Off by default here: the Trainer compiles one graph and DDP all-reduces after the backward. On
            2 H100s, DiT-B/2 at 64 images per GPU in bf16 scaled 1.05-1.19x one GPU with the split and
            1.90x without it (docs/diffcore.md). Applies only to the frames the training step compiles.
        max_seconds: optional wall-time budget of one ``fit`` call: training ends cleanly (final log,
            checkpoint and models, ``TrainSummary.stopped_by_time``) after the first optimizer step that
            finds it spent; the learning-rate schedule is then cut short. For benchmarks with hard limits.
        float8: train the network's linear layers in float8 through torchao (``pip install diffcore[quant]``):
            ``"none"``, ``"tensorwise"`` or ``"rowwise"`` (:mod:`diffcore.precision.float8`; embeddings, adaLN
            modulation and the output layer stay in bf16). Needs ``mixed_precision="bf16"``. Where float8
            matmuls cannot run (the CPU, a GPU below compute capability 8.9) the Trainer warns in one line and
            trains in bf16. Checkpoints and saved models are the same either way.
        sharding: ``"none"`` (each process holds the whole model; several processes run DDP) or ``"fsdp2"``:
            under several processes, shard parameters, gradients and optimizer state over them with
            PyTorch's FSDP2 (``fully_shard``) through accelerate's ``FullyShardedDataParallelPlugin``, one
            unit per block (:mod:`diffcore.training.sharding`). Checkpoints are then sharded
            (``torch.distributed.checkpoint``) and load on any process count. With one process there is
            nothing to shard and the run is a plain one. ``accelerate launch --config_file`` with an FSDP2
            configuration works too (then accelerate's own settings apply).
        fsdp_blocks: class names of the modules that each become one FSDP unit; ``None``: the model's
            ``_no_split_modules`` (DiT, MMDiT, U-Net and the video DiT declare their blocks).
        activation_checkpointing: recompute each block's activations in the backward pass instead of storing
            them (less memory, about one more forward of compute). Under ``sharding="fsdp2"`` through the FSDP
            plugin, per unit; otherwise by setting ``gradient_checkpointing`` on every module of the model that
            has it (DiT, MMDiT, U-Net, ControlNet, the video DiT; an error for a model without one).
        fsdp_reshard_after_forward: free each block's gathered parameters after its forward and gather them
            again for the backward (ZeRO-3); ``False`` keeps them until the backward (ZeRO-2-like: more
            memory, one all-gather less per block).
    """

    steps: int = 1000
    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    lr_schedule: LrSchedule = "constant"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    grad_accum_steps: int = 1
    max_grad_norm: float | None = 1.0
    mixed_precision: MixedPrecision = "no"
    ema_decay: float | None = 0.9999
    ema_warmup: bool = True
    ema_warmup_steps: int = 0
    ema_update_every: int = 1
    log_every: int = 50
    checkpoint_every: int | None = 1000
    keep_last: int = 3
    output_dir: str = "runs/train"
    resume: str | None = None
    seed: int = 0
    progress_bar: bool = True
    tensorboard: bool = True
    device: Device = "auto"
    compile: bool = False
    compile_ddp_optimizer: bool = False
    max_seconds: float | None = None
    float8: Float8Recipe = "none"
    sharding: Sharding = "none"
    fsdp_blocks: tuple[str, ...] | None = None
    activation_checkpointing: bool = False
    fsdp_reshard_after_forward: bool = True

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)  # type: ignore[assignment]  # JSON and YAML give lists
        _positive_int("steps", self.steps)
        _positive_int("grad_accum_steps", self.grad_accum_steps)
        _positive_int("ema_update_every", self.ema_update_every)
        _positive_int("log_every", self.log_every)
        _positive_int("keep_last", self.keep_last)
        if self.checkpoint_every is not None:
            _positive_int("checkpoint_every", self.checkpoint_every)
        _non_negative_int("warmup_steps", self.warmup_steps)
        _non_negative_int("ema_warmup_steps", self.ema_warmup_steps)
        _non_negative_int("seed", self.seed)
        if self.max_seconds is not None and not (math.isfinite(self.max_seconds) and self.max_seconds > 0):
            raise ValueError(f"max_seconds: expected a finite number > 0 or None, got {self.max_seconds!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr: expected a finite number > 0, got {self.lr!r}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay: expected a finite number >= 0, got {self.weight_decay!r}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas: expected two numbers in [0, 1), got {self.betas!r}")
        if not self.eps > 0:
            raise ValueError(f"eps: expected a number > 0, got {self.eps!r}")
        if self.lr_schedule not in _SCHEDULES:
            raise ValueError(f"lr_schedule: expected one of {_SCHEDULES}, got {self.lr_schedule!r}")
        if self.warmup_steps >= self.steps and self.lr_schedule == "cosine":
            raise ValueError(
                f"warmup_steps: must be < steps ({self.steps}) for the cosine schedule, got {self.warmup_steps}"
            )
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio: expected a number in [0, 1], got {self.min_lr_ratio!r}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm: expected a number > 0 or None, got {self.max_grad_norm!r}")
        if self.mixed_precision not in _PRECISIONS:
            raise ValueError(f"mixed_precision: expected one of {_PRECISIONS}, got {self.mixed_precision!r}")
        if self.ema_decay is not None and not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay: expected a number in [0, 1) or None, got {self.ema_decay!r}")
        if self.device not in DEVICES:
            raise ValueError(f"device: expected one of {DEVICES}, got {self.device!r}")
        if not isinstance(self.compile, bool):
            raise ValueError(f"compile: expected True or False, got {self.compile!r}")
        if not isinstance(self.compile_ddp_optimizer, bool):
            raise ValueError(
                f"compile_ddp_optimizer: expected True or False, got {self.compile_ddp_optimizer!r}"
            )
        if self.float8 not in FLOAT8_RECIPES:
            raise ValueError(f"float8: expected one of {FLOAT8_RECIPES}, got {self.float8!r}")
        if self.float8 != "none" and self.mixed_precision != "bf16":
            raise ValueError(
                f"float8: {self.float8!r} trains the other layers in bf16; set mixed_precision='bf16' "
                f"(got {self.mixed_precision!r})"
            )
        if self.sharding not in _SHARDINGS:
            raise ValueError(f"sharding: expected one of {_SHARDINGS}, got {self.sharding!r}")
        if self.fsdp_blocks is not None:
            self.fsdp_blocks = tuple(self.fsdp_blocks)  # type: ignore[assignment]  # JSON and YAML give lists
            if not self.fsdp_blocks or not all(isinstance(n, str) and n for n in self.fsdp_blocks):
                raise ValueError(
                    f"fsdp_blocks: expected None or a non-empty list of class names, got {self.fsdp_blocks!r}"
                )
        for name in ("activation_checkpointing", "fsdp_reshard_after_forward"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}: expected True or False, got {getattr(self, name)!r}")
        if not self.output_dir:
            raise ValueError("output_dir: expected a folder path, got an empty string")
        if not isinstance(self.ema_warmup, bool):
            raise ValueError(f"ema_warmup: expected True or False, got {self.ema_warmup!r}")
        if isinstance(self.resume, os.PathLike):
            self.resume = os.fspath(self.resume)
        if self.resume is not None and not (isinstance(self.resume, str) and self.resume):
            raise ValueError(
                f"resume: expected None, 'latest', 'auto' or a checkpoint folder, got {self.resume!r}"
            )


def _positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")


def _non_negative_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name}: expected an integer >= 0, got {value!r}")
