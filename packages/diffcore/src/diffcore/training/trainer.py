"""The training loop: any model, any objective, on CPU, one GPU or several (``accelerate launch``).

The Trainer does not know which objective it runs. An objective is a callable

    objective(model, batch, generator=None) -> loss                      # a scalar Tensor
    objective(model, batch, generator=None) -> (loss, {"name": value})   # plus extra scalars to log

``generator`` is a ``torch.Generator`` on the training device, re-seeded from
``(config.seed, process index, micro-batch index)`` before every call: an objective that draws its
noise and times from it is reproducible and resumes exactly. The Trainer never seeds the global RNGs;
what draws from them (dropout) follows the caller's, and a checkpoint saves and a resume restores them.

Example::

    trainer = Trainer(model, objective, loader, TrainConfig(steps=10_000, output_dir="runs/x"))
    summary = trainer.fit()        # after a crash: TrainConfig(..., resume="latest")

Run on several GPUs with ``accelerate launch --num_processes 2 train.py``; nothing else changes. A model
too large for one GPU trains sharded with ``TrainConfig(sharding="fsdp2")`` (:mod:`diffcore.training.sharding`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.utils import (
    KwargsHandler,
    TorchDynamoPlugin,
    broadcast,
    find_batch_size,
    is_tensorboard_available,
)
from torch import nn
from torch.distributed.tensor import DTensor
from torch.utils.data import DataLoader

from diffcore.pretrained import WEIGHTS_NAME, PretrainedModel, atomic_save_safetensors
from diffcore.training import _compat, sharding
from diffcore.training import checkpoint as ckpt
from diffcore.training.callbacks import Callback
from diffcore.training.config import TrainConfig
from diffcore.training.ema import EMA
from diffcore.training.log_writers import LOG_FILE, JsonlLog, ProgressBar
from diffcore.training.lr_schedules import build_lr_scheduler

ObjectiveOutput = torch.Tensor | tuple[torch.Tensor, dict[str, Any]]
Objective = Callable[..., ObjectiveOutput]

CHECKPOINT_DIR = "checkpoints"
MODEL_DIR = "model"
EMA_DIR = "model_ema"
TENSORBOARD_DIR = "tensorboard"
TENSORBOARD_MISSING = (
    "TrainConfig.tensorboard is on but tensorboard is not installed: logging to log.jsonl only "
    "(pip install 'diffcore[tensorboard]', or set tensorboard=False)"
)

# What a run writes into its output_dir: a fresh run (config.resume=None) refuses a folder holding any of them.
RUN_FILES = (CHECKPOINT_DIR, LOG_FILE, MODEL_DIR, EMA_DIR, TENSORBOARD_DIR)

# Config fields whose change between a checkpoint and its resume breaks exact reproducibility.
_RESUME_SENSITIVE = (
    "seed",
    "grad_accum_steps",
    "mixed_precision",
    "lr",
    "lr_schedule",
    "warmup_steps",
    "ema_decay",
    "ema_warmup",
    "ema_warmup_steps",
    "ema_update_every",
)


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; raised before any further checkpoint is written."""


@dataclasses.dataclass
class TrainSummary:
    """What :meth:`Trainer.fit` returns.

    Attributes:
        steps: optimizer steps done in total (including those before a resume).
        start_step: the step training started (or resumed) from.
        final_loss: mean loss over the last log window (all processes).
        seconds: wall time of this ``fit`` call.
        samples_per_sec: samples (all processes) per second over this ``fit`` call.
        output_dir: the run folder.
        last_checkpoint: the final resumable checkpoint.
        model_dir: the trained model, ``save_pretrained`` format.
        ema_dir: the EMA model, ``save_pretrained`` format (``None`` without EMA).
        stopped_by_time: training ended before ``config.steps`` because ``config.max_seconds`` ran out.
    """

    steps: int
    start_step: int
    final_loss: float
    seconds: float
    samples_per_sec: float
    output_dir: Path
    last_checkpoint: Path | None
    model_dir: Path
    ema_dir: Path | None
    stopped_by_time: bool = False


class Trainer:
    """Train ``model`` on ``objective`` over ``train_loader`` with an ``accelerate.Accelerator``.

    Args:
        model: any ``nn.Module``; a :class:`~diffcore.pretrained.PretrainedModel` is saved with
            ``save_pretrained`` at the end, as is any model with a ``save_pretrained(directory)`` method
            that does not set ``supports_save_pretrained = False`` (others as a bare ``model.safetensors``).
        objective: ``objective(model, batch, generator=None) -> loss | (loss, logs)`` (see module doc).
        train_loader: a ``torch.utils.data.DataLoader``; its batch size is the per-process micro-batch.
            A shuffling loader is re-seeded each epoch from ``config.seed`` (accelerate's seedable
            sampler), so the data order, and the position in it, survive a resume.
        config: the :class:`TrainConfig`.
        optimizer: optional optimizer over ``model``'s parameters; default AdamW (fused on CUDA)
            from the config. Its ``lr`` is the peak of the schedule.
        callbacks: :class:`Callback` objects called at start, each step, each log, each checkpoint, end.
        resume_from: deprecated, set ``config.resume`` (same values); when given it replaces it.
        kwargs_handlers: extra accelerate handlers, e.g. ``DistributedDataParallelKwargs(find_unused_parameters=True)``.

    Whether the run starts fresh or continues a checkpoint is ``config.resume``. Only one Trainer should
    train at a time in a process: accelerate's state is process-wide.
    """

    def __init__(
        self,
        model: nn.Module,
        objective: Objective,
        train_loader: DataLoader,
        config: TrainConfig,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        callbacks: Sequence[Callback] = (),
        resume_from: str | Path | None = None,
        kwargs_handlers: Sequence[KwargsHandler] = (),
    ) -> None:
        _check_arguments(model, objective, train_loader, config)
        if resume_from is not None:
            warnings.warn(
                "Trainer(resume_from=...) is deprecated; set TrainConfig.resume (--set train.resume=latest)",
                DeprecationWarning,
                stacklevel=2,
            )
            config = dataclasses.replace(config, resume=os.fspath(resume_from))
        self.config = config
        self.objective = objective
        self.callbacks = list(callbacks)
        self.output_dir = Path(config.output_dir)
        self.checkpoint_dir = self.output_dir / CHECKPOINT_DIR
        resume_path = self._resolve_resume(config.resume)  # before any set-up: these errors are cheap
        if resume_path is None and config.resume is None:
            self._refuse_previous_run()
        # A second Trainer in the same process (an autoencoder, then a diffusion model in bf16) must start
        # from clean accelerate settings; the distributed state (PartialState) is kept.
        _compat.reset_accelerate_state()
        # TensorBoard is an extra (diffcore[tensorboard]): without it the run logs to log.jsonl only.
        self._tensorboard = config.tensorboard and _tensorboard_available()
        plugin = _fsdp_plugin(model, config)
        use_fsdp_env = os.environ.get(
            "ACCELERATE_USE_FSDP"
        )  # an Accelerator given a plugin sets it to "true"
        self.accelerator = Accelerator(
            mixed_precision=config.mixed_precision,
            gradient_accumulation_steps=config.grad_accum_steps,
            # accelerate only forms a multi-process CPU group (gloo) when told cpu=True.
            cpu=config.device == "cpu" or not torch.accelerator.is_available(),
            log_with="tensorboard" if self._tensorboard else None,
            project_dir=str(self.output_dir),
            # non_blocking: batches go to the GPU with asynchronous copies. accelerate's default copy waits
            # for the stream, i.e. for the whole previous step, once a step: the host then cannot queue a
            # step while the GPU runs the last one. From a pinned loader (pin_memory=True) the copy is truly
            # asynchronous; from pageable memory it is what it was.
            dataloader_config=DataLoaderConfiguration(
                use_seedable_sampler=True, data_seed=config.seed, non_blocking=True
            ),
            kwargs_handlers=list(kwargs_handlers),
            # None: accelerate's default plugin, which reads ACCELERATE_DYNAMO_* (accelerate launch / config).
            dynamo_plugin=TorchDynamoPlugin(backend="inductor") if config.compile else None,
            fsdp_plugin=plugin,
        )
        if plugin is not None:
            _compat.fsdp_on_cpu(self.accelerator, plugin, config.mixed_precision)
            _restore_env("ACCELERATE_USE_FSDP", use_fsdp_env)  # so that a later Trainer decides anew
        # FSDP2 from TrainConfig.sharding or from `accelerate launch --config_file` (then accelerate's plugin).
        self.sharded = self.accelerator.is_fsdp2
        if self.sharded and plugin is None:
            sharding.complete_plugin(self.accelerator.state.fsdp_plugin, model)
        if config.tensorboard and not self._tensorboard and self.accelerator.is_main_process:
            warnings.warn(TENSORBOARD_MISSING, stacklevel=2)
        model.to(self.accelerator.device)
        if optimizer is None:
            optimizer = _default_optimizer(model, config, self.accelerator.device)
        # The schedule counts optimizer steps, so it is stepped by hand and not prepared
        # (a prepared scheduler advances num_processes times per step).
        self.lr_scheduler = build_lr_scheduler(
            optimizer,
            schedule=config.lr_schedule,
            warmup_steps=config.warmup_steps,
            total_steps=config.steps,
            min_lr_ratio=config.min_lr_ratio,
        )
        self.model, self.optimizer, self.train_loader = self.accelerator.prepare(
            model, optimizer, train_loader
        )
        if self.sharded:
            sharding.register_forward_methods(self.model)
        self.ema = (
            (sharding.ShardedEMA if self.sharded else EMA)(
                self.unwrapped_model,
                config.ema_decay,
                config.ema_warmup_steps,
                config.ema_update_every,
                warmup=config.ema_warmup,
            )
            if config.ema_decay is not None
            else None
        )
        self.step = 0
        self.epoch = 0
        self.batches_in_epoch = 0
        self.micro_step = 0
        self.start_step = 0
        self.last_checkpoint: Path | None = None
        self._pending_rng: Path | None = None
        self._generator = torch.Generator(device=self.accelerator.device)
        # Dynamo reads optimize_ddp when it compiles a frame, so the training step (where the model's
        # frames are compiled, and recompiled) runs under the configured value, and nothing else does.
        self._compile_settings = (
            _compat.dynamo_optimize_ddp(config.compile_ddp_optimizer)
            if config.compile
            else contextlib.nullcontext()
        )
        self._log = JsonlLog(self.output_dir / LOG_FILE)
        self._fitted = False
        self._active_loader = self.train_loader
        self._first_bad = torch.full((), -1, device=self.accelerator.device, dtype=torch.int64)
        self._last_record: dict[str, Any] = {}
        self._reset_window()
        if resume_path is not None:
            self._load(resume_path)
        self._refuse_newer_checkpoints()

    # ------------------------------------------------------------------ public

    @property
    def unwrapped_model(self) -> nn.Module:
        """The model without its DDP / mixed-precision / ``torch.compile`` wrappers (the module passed in)."""
        return self.accelerator.unwrap_model(self.model, keep_torch_compile=False)

    @property
    def ema_model(self) -> nn.Module | None:
        """The EMA copy of the model (``None`` when EMA is off; under FSDP an error: it is sharded, read the
        saved ``model_ema``)."""
        return self.ema.module if self.ema is not None else None

    def fit(self) -> TrainSummary:
        """Train up to ``config.steps`` optimizer steps; save the final checkpoint and models.

        A run whose EMA still holds more than 5% of the weights training started from warns (a Python
        warning and a ``warning`` in the last log record): its ``model_ema`` is mostly the initialisation.

        Raises:
            NonFiniteLossError: the loss became NaN/inf; the message names the first such step.
                Checked at every log step, before every checkpoint and at the end, so no
                checkpoint holding non-finite weights is ever written.
        """
        if self._fitted:
            raise RuntimeError(
                "fit: this Trainer has already trained; build a new one (TrainConfig.resume='latest')"
            )
        self._fitted = True
        self._prepare_outputs()
        self._reset_window()  # restart the throughput clock
        bar = ProgressBar(
            self.config.steps, self.step, self.config.progress_bar and self.accelerator.is_main_process
        )
        start, samples = time.perf_counter(), 0
        batches = self._batches()
        for cb in self.callbacks:
            cb.on_train_start(self)
        stopped_by_time = False
        try:
            while self.step < self.config.steps and not stopped_by_time:
                batch = next(batches)
                samples += self._train_micro_batch(batch)
                if self.accelerator.sync_gradients:
                    stopped_by_time = self._after_optimizer_step(bar, start)
        finally:
            batches.close()
            # Leaving an epoch early does not unregister its loader from accelerate's gradient state.
            self._active_loader.end()
            bar.close()
        self._check_finite()
        if self.last_checkpoint is None or self.last_checkpoint.name != ckpt.checkpoint_name(self.step):
            self.save_checkpoint()
        model_dir, ema_dir = self._save_models()
        # Not accelerator.end_training(): it also destroys the process group, which the caller
        # may still need after fit (sampling, evaluation); call it at the end of the script.
        for tracker in self.accelerator.trackers:
            tracker.finish()
        seconds = time.perf_counter() - start
        summary = TrainSummary(
            steps=self.step,
            start_step=self.start_step,
            final_loss=self._last_record.get("loss", math.nan),
            seconds=seconds,
            samples_per_sec=samples * self.accelerator.num_processes / max(seconds, 1e-9),
            output_dir=self.output_dir,
            last_checkpoint=self.last_checkpoint,
            model_dir=model_dir,
            ema_dir=ema_dir,
            stopped_by_time=stopped_by_time,
        )
        for cb in self.callbacks:
            cb.on_train_end(self, summary)
        return summary

    def _out_of_time(self, start: float) -> bool:
        """Whether ``config.max_seconds`` has passed since ``start``; every process takes the same decision
        (the main process's clock), so distributed training stops at one step everywhere."""
        if self.config.max_seconds is None:
            return False
        spent = time.perf_counter() - start > self.config.max_seconds
        if self.accelerator.num_processes == 1:
            return spent
        flag = torch.tensor([float(spent)], device=self.accelerator.device)
        return bool(broadcast(flag, from_process=0).item())

    def save_checkpoint(self) -> Path:
        """Write a resumable checkpoint of the current step atomically; returns its folder."""
        self._check_finite()
        acc = self.accelerator
        staging = ckpt.staging_dir(self.checkpoint_dir, self.step)
        final = self.checkpoint_dir / ckpt.checkpoint_name(self.step)
        if acc.is_main_process:
            if staging.exists():
                ckpt.remove_tree(staging)
            staging.mkdir(parents=True)
        acc.wait_for_everyone()
        ckpt.write_rng_state(staging, acc.process_index)
        if self.sharded:
            sharding.save_sharded(staging, self.model, self.optimizer.optimizer, self.ema)
            if acc.is_main_process:
                ckpt.write_trainer_state(staging, self._trainer_state())
        elif acc.is_main_process:
            ckpt.write_main_state(
                staging,
                model=self.unwrapped_model,
                optimizer=self.optimizer,
                ema=self.ema.averaged if self.ema is not None else None,
                trainer_state=self._trainer_state(),
            )
        acc.wait_for_everyone()
        if acc.is_main_process:
            ckpt.publish(staging, final, self.config.keep_last)
        acc.wait_for_everyone()
        self.last_checkpoint = final
        for cb in self.callbacks:
            cb.on_checkpoint(self, final)
        return final

    # ------------------------------------------------------------------ one step

    def _train_micro_batch(self, batch: Any) -> int:
        """Forward, backward and (at the end of an accumulation window) the optimizer step."""
        acc = self.accelerator
        self._generator.manual_seed(_micro_seed(self.config.seed, acc.process_index, self.micro_step))
        with acc.accumulate(self.model):
            with self._compile_settings:
                loss, extras = _split_output(self.objective(self.model, batch, generator=self._generator))
            acc.backward(loss)
            if acc.sync_gradients:
                max_norm = self.config.max_grad_norm if self.config.max_grad_norm is not None else math.inf
                grad_norm = acc.clip_grad_norm_(self.model.parameters(), max_norm)
                self._window["lr"] = self.optimizer.param_groups[0]["lr"]
                self.optimizer.step()
                self.lr_scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                self._window["grad_norm"] = self._window["grad_norm"] + _as_tensor(grad_norm, loss.device)
        self.batches_in_epoch += 1
        self.micro_step += 1
        size = find_batch_size(batch)
        self._accumulate_window(loss.detach(), extras, size)
        return size

    def _after_optimizer_step(self, bar: ProgressBar, start: float) -> bool:
        """EMA, hooks, log and checkpoint after an optimizer step; whether ``max_seconds`` ends the run here."""
        self.step += 1
        self._window["steps"] += 1
        if self.ema is not None and self.ema.due(self.step):
            self.ema.update(self.unwrapped_model)
        bar.advance()
        for cb in self.callbacks:
            cb.on_step_end(self, self.step)
        out_of_time = self.step < self.config.steps and self._out_of_time(start)
        last = out_of_time or self.step == self.config.steps
        if self.step % self.config.log_every == 0 or last:
            record = self._write_log(last=last)
            bar.show(record)
        every = self.config.checkpoint_every
        if every is not None and self.step % every == 0:
            self.save_checkpoint()
        return out_of_time

    def _batches(self) -> Iterator[Any]:
        """Micro-batches across epochs, starting at the saved data position; restores RNG after a resume.

        The RNG states of a checkpoint are restored right after the resumed epoch's first fetch,
        the point an uninterrupted run had already passed when it saved them (the DataLoader draws
        its base seed there).
        """
        end = object()
        while True:
            self.train_loader.set_epoch(self.epoch)
            loader = self.train_loader
            if self.batches_in_epoch > 0:
                loader = _compat.skip_first_batches(
                    self.accelerator, self.train_loader, self.batches_in_epoch
                )
            self._active_loader = loader
            iterator = iter(loader)
            yielded = False
            while True:
                batch = next(iterator, end)
                if self._pending_rng is not None:
                    ckpt.load_rng_state(self._pending_rng, self.accelerator.process_index)
                    self._pending_rng = None
                if batch is end:
                    break
                yielded = True
                yield batch
            if not yielded and self.batches_in_epoch == 0:
                raise ValueError("train_loader: yielded no batches (an empty dataset?)")
            self.epoch += 1
            self.batches_in_epoch = 0

    # ------------------------------------------------------------------ logging

    def _reset_window(self) -> None:
        zero = torch.zeros((), device=self.accelerator.device, dtype=torch.float64)
        self._window: dict[str, Any] = {
            "loss": zero.clone(),
            "grad_norm": zero.clone(),
            "extras": {},
            "micro": 0,
            "steps": 0,
            "samples": 0,
            "lr": self.optimizer.param_groups[0]["lr"],
            "start": time.perf_counter(),
        }

    def _accumulate_window(self, loss: torch.Tensor, extras: dict[str, Any], samples: int) -> None:
        w = self._window
        w["samples"] += samples
        # Record the first optimizer step whose loss is not finite, without a host sync.
        bad = ~torch.isfinite(loss)
        self._first_bad = torch.where(bad & (self._first_bad < 0), self.step + 1, self._first_bad)
        w["loss"] = w["loss"] + loss.double()
        for name, value in extras.items():
            w["extras"][name] = w["extras"].get(name, 0.0) + _as_tensor(value, loss.device)
        w["micro"] += 1

    def _write_log(self, last: bool = False) -> dict[str, Any]:
        """Reduce the window over processes, write one JSONL line and TensorBoard scalars. The ``last``
        record of a run carries the EMA's warning, if any (:meth:`EMA.undertrained_warning`)."""
        self._check_finite()
        w = self._window
        names = sorted(w["extras"])
        values = torch.stack(
            [w["loss"] / w["micro"], w["grad_norm"] / max(w["steps"], 1)]
            + [w["extras"][n].double() / w["micro"] for n in names]
        )
        values = self.accelerator.reduce(values, reduction="mean").tolist()
        seconds = time.perf_counter() - w["start"]
        samples = w["samples"] * self.accelerator.num_processes
        record = {
            "step": self.step,
            "epoch": self.epoch,
            "loss": values[0],
            "lr": w["lr"],
            "grad_norm": values[1],
            "samples_per_sec": samples / max(seconds, 1e-9),
            **dict(zip(names, values[2:])),
        }
        warning = self.ema.undertrained_warning() if last and self.ema is not None else None
        if warning is not None:
            record["warning"] = warning
        if self.accelerator.is_main_process:
            self._log.write(record)
            if warning is not None:
                warnings.warn(warning, stacklevel=4)
        if self._tensorboard:
            scalars = {f"train/{k}": v for k, v in record.items() if k not in ("step", "warning")}
            self.accelerator.log(scalars, step=self.step)
        self._last_record = record
        self._reset_window()
        for cb in self.callbacks:
            cb.on_log(self, record)
        return record

    def _check_finite(self) -> None:
        """Raise :class:`NonFiniteLossError` on every process if any process saw a non-finite loss."""
        flags = self.accelerator.gather(self._first_bad.reshape(1))
        bad = [int(s) for s in flags.tolist() if s >= 0]
        if bad:
            kept = (
                f"the last checkpoint {self.last_checkpoint} is left untouched"
                if self.last_checkpoint
                else "no checkpoint was written"
            )
            raise NonFiniteLossError(
                f"loss is not finite (NaN or inf) at step {min(bad)}; training stopped at step {self.step} "
                f"and {kept}. Lower lr, set max_grad_norm, or check the data and objective."
            )

    # ------------------------------------------------------------------ saving and resuming

    def _trainer_state(self) -> dict[str, Any]:
        scaler = self.accelerator.scaler
        return {
            "step": self.step,
            "epoch": self.epoch,
            "batches_in_epoch": self.batches_in_epoch,
            "micro_step": self.micro_step,
            "num_processes": self.accelerator.num_processes,
            "lr_scheduler": self.lr_scheduler.state_dict(),
            "grad_scaler": scaler.state_dict() if scaler is not None else None,
            "config": dataclasses.asdict(self.config),
        }

    def _resolve_resume(self, resume: str | None) -> Path | None:
        """The checkpoint ``config.resume`` names, or ``None`` for a fresh run."""
        if resume is None:
            return None
        if resume in ("latest", "auto"):
            latest = ckpt.latest_checkpoint(self.checkpoint_dir)
            if latest is None and resume == "latest":
                raise FileNotFoundError(
                    f"resume: 'latest' found no complete checkpoint under {self.checkpoint_dir}; to start fresh "
                    "choose another output_dir or delete this one (resume='auto' starts fresh when there is none)"
                )
            return latest
        return Path(resume)

    def _refuse_previous_run(self) -> None:
        """A fresh run must not mix its files with (or overwrite) a previous run's in ``output_dir``."""
        found = [name for name in RUN_FILES if (self.output_dir / name).exists()]
        if found:
            raise ValueError(
                f"output_dir: {self.output_dir} already holds a training run ({', '.join(found)}); continue it "
                "with --set train.resume=latest (TrainConfig.resume='latest'), or choose another output_dir"
            )

    def _load(self, path: Path) -> None:
        """Restore everything from checkpoint ``path``; raises before touching any file on disk."""
        state = ckpt.verify(path)
        if ckpt.is_sharded(path):
            self._load_sharded(path)
        else:
            self._load_full(path)
        try:
            self.lr_scheduler.load_state_dict(state["lr_scheduler"])
            if self.accelerator.scaler is not None and state.get("grad_scaler"):
                self.accelerator.scaler.load_state_dict(state["grad_scaler"])
            self.step = int(state["step"])
            self.epoch = int(state["epoch"])
            self.batches_in_epoch = int(state["batches_in_epoch"])
            self.micro_step = int(state["micro_step"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ckpt.CheckpointError(
                f"checkpoint: {path / ckpt.STATE_FILE} is missing a field ({exc})"
            ) from exc
        _warn_config_changes(
            state.get("config", {}), self.config, state.get("num_processes"), self.accelerator
        )
        self.start_step = self.step
        self.last_checkpoint = path
        self._pending_rng = path

    def _load_full(self, path: Path) -> None:
        """Model, EMA and optimizer from the unsharded files of checkpoint ``path``."""
        if self.sharded:
            raise ckpt.CheckpointError(
                f"checkpoint: {path} was written without sharding; resume it with sharding='none'"
            )
        ckpt.load_weights(self.unwrapped_model, path / ckpt.MODEL_FILE)
        has_ema = (path / ckpt.EMA_FILE).is_file()
        if self.ema is not None and not has_ema:
            raise ckpt.CheckpointError(f"checkpoint: {path} has no {ckpt.EMA_FILE} but ema_decay is set")
        if self.ema is not None:
            ckpt.load_weights(self.ema.averaged, path / ckpt.EMA_FILE)
        ckpt.load_optimizer(self.optimizer, path / ckpt.OPTIMIZER_FILE)

    def _load_sharded(self, path: Path) -> None:
        """Model, EMA and optimizer from a sharded checkpoint, resharded to this run (FSDP or not)."""
        try:
            sharding.load_sharded(path, self.model, self.optimizer.optimizer, self.ema)
        except Exception as exc:  # a key or shape mismatch: the checkpoint belongs to another model
            raise ckpt.CheckpointError(
                f"checkpoint: {path} does not fit this model or optimizer ({exc})"
            ) from exc

    def _refuse_newer_checkpoints(self) -> None:
        newer = [s for s, _ in ckpt.list_checkpoints(self.checkpoint_dir) if s > self.step]
        if newer:
            raise ValueError(
                f"output_dir: {self.checkpoint_dir} already holds checkpoints after step {self.step} "
                f"(steps {newer}); resume from the latest (TrainConfig.resume='latest') or choose another "
                "output_dir, so they are not overwritten"
            )

    def _prepare_outputs(self) -> None:
        # Every process has looked at output_dir (in __init__: a previous run? newer checkpoints?) before
        # the main one writes into it, so all of them take the same decision.
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            ckpt.remove_leftovers(self.checkpoint_dir)
            # A killed run may have logged past the checkpoint we resume from; a fresh run starts a fresh log.
            self._log.truncate_after(self.step)
        if self._tensorboard:
            self.accelerator.init_trackers(TENSORBOARD_DIR)
        self.accelerator.wait_for_everyone()

    def _save_models(self) -> tuple[Path, Path | None]:
        model_dir = self.output_dir / MODEL_DIR
        ema_dir = self.output_dir / EMA_DIR if self.ema is not None else None
        if self.sharded:  # gather the full weights (a collective), then write them as without sharding
            state = sharding.gather_full_state(self.model)
            ema_state = self.ema.full_state_dict() if isinstance(self.ema, sharding.ShardedEMA) else None
            if self.accelerator.is_main_process:
                _save_model(self.unwrapped_model, model_dir, state)
                if ema_dir is not None and ema_state is not None:
                    _save_model(self.unwrapped_model, ema_dir, ema_state)
            self.accelerator.wait_for_everyone()
            return model_dir, ema_dir
        if self.accelerator.is_main_process:
            _save_model(self.unwrapped_model, model_dir)
            if self.ema is not None and ema_dir is not None:
                _save_model(self.ema.module, ema_dir)
        self.accelerator.wait_for_everyone()
        return model_dir, ema_dir


# ---------------------------------------------------------------------------- helpers


def _tensorboard_available() -> bool:
    """Whether accelerate's TensorBoard tracker can run (the ``tensorboard`` extra, or tensorboardX)."""
    return is_tensorboard_available()


def _check_arguments(model: Any, objective: Any, train_loader: Any, config: Any) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if not callable(objective):
        raise TypeError(
            f"objective: expected a callable objective(model, batch, generator=None), got {objective!r}"
        )
    if not isinstance(train_loader, DataLoader):
        raise TypeError(
            f"train_loader: expected a torch.utils.data.DataLoader, got {type(train_loader).__name__}"
        )
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config: expected a TrainConfig, got {type(config).__name__}")
    if config.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' was asked for but no CUDA device is available; use 'cpu' or 'auto'")
    if config.mixed_precision == "fp16" and (config.device == "cpu" or not torch.cuda.is_available()):
        raise ValueError("mixed_precision: 'fp16' needs a CUDA GPU; use 'bf16' (CPU or GPU) or 'no'")


def _restore_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def _fsdp_plugin(model: nn.Module, config: TrainConfig) -> Any:
    """accelerate's FSDP2 plugin for ``config.sharding="fsdp2"``, else ``None``."""
    if config.sharding != "fsdp2":
        return None
    return sharding.fsdp_plugin(
        model,
        blocks=config.fsdp_blocks,
        mixed_precision=config.mixed_precision,
        activation_checkpointing=config.activation_checkpointing,
        reshard_after_forward=config.fsdp_reshard_after_forward,
    )


def _default_optimizer(model: nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model: has no parameters with requires_grad=True to train")
    return torch.optim.AdamW(
        params,
        lr=config.lr,
        betas=config.betas,
        eps=config.eps,
        weight_decay=config.weight_decay,
        fused=device.type == "cuda",
    )


def _split_output(output: ObjectiveOutput) -> tuple[torch.Tensor, dict[str, Any]]:
    loss, extras = output if isinstance(output, tuple) else (output, {})
    if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise ValueError(f"objective: must return a scalar loss tensor (or (loss, dict)), got {shape}")
    if not isinstance(extras, dict):
        raise ValueError(
            f"objective: the second returned value must be a dict of scalars, got {type(extras).__name__}"
        )
    return loss, extras


def _as_tensor(value: Any, device: torch.device) -> torch.Tensor:
    if value is None:  # a backend that does not report the gradient norm
        return torch.tensor(math.nan, device=device, dtype=torch.float64)
    if isinstance(value, DTensor):  # FSDP2's gradient norm: a partial sum over the shards
        value = value.full_tensor()
    if isinstance(value, torch.Tensor):
        return value.detach().to(device=device, dtype=torch.float64).reshape(())
    return torch.tensor(float(value), device=device, dtype=torch.float64)


def _micro_seed(seed: int, rank: int, micro_step: int) -> int:
    """A well-mixed 63-bit seed for the objective's generator at one micro-batch of one process."""
    return int(np.random.SeedSequence([seed, rank, micro_step]).generate_state(1, dtype=np.uint64)[0] >> 1)


def saves_itself(model: nn.Module) -> bool:
    """Whether ``model`` has a callable ``save_pretrained`` and does not opt out with a false
    ``supports_save_pretrained`` attribute (a wrapper whose parts cannot all be saved)."""
    return callable(getattr(model, "save_pretrained", None)) and bool(
        getattr(model, "supports_save_pretrained", True)
    )


def _save_model(model: nn.Module, directory: Path, state: dict[str, torch.Tensor] | None = None) -> None:
    """``save_pretrained`` where the model has one (a :class:`PretrainedModel`, or a composite such as a
    text-conditioned wrapper that saves its parts, unless it says ``supports_save_pretrained = False``),
    else the bare state as ``model.safetensors``. ``state``: the weights to write instead of the model's
    own (the gathered weights of a sharded model); a :class:`PretrainedModel` still writes its config."""
    if state is not None and getattr(type(model), "save_pretrained", None) is PretrainedModel.save_pretrained:
        model.save_pretrained(directory, state_dict=state)
    elif state is None and saves_itself(model):  # every PretrainedModel has save_pretrained
        model.save_pretrained(directory)
    else:
        state = model.state_dict() if state is None else state
        atomic_save_safetensors(state, directory / WEIGHTS_NAME, metadata={"format": "pt"})


def _warn_config_changes(
    saved: dict[str, Any], config: TrainConfig, saved_procs: Any, acc: Accelerator
) -> None:
    current = dataclasses.asdict(config)
    changed = [
        f"{k}: {saved[k]!r} -> {current[k]!r}"
        for k in _RESUME_SENSITIVE
        if k in saved and saved[k] != current[k]
    ]
    if saved_procs is not None and saved_procs != acc.num_processes:
        changed.append(f"num_processes: {saved_procs} -> {acc.num_processes}")
    if changed:
        warnings.warn(
            "resuming with changed settings, the run will not match an uninterrupted one: "
            + "; ".join(changed),
            stacklevel=3,
        )
