"""The Trainer on CPU: accumulation, EMA, LR and JSONL logs, bf16, NaN stop, corrupt checkpoints, resume as a
setting, progress output, the caller's global RNG."""

from __future__ import annotations

import io
import json
import math
import random
import re
import shutil
import sys
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from diffcore.pretrained import PretrainedModel, load_pretrained
from diffcore.training import (
    Callback,
    CheckpointError,
    NonFiniteLossError,
    TrainConfig,
    Trainer,
    latest_checkpoint,
    lr_factor,
    read_run_log,
)
from diffcore.training._compat import reset_accelerate_state
from diffcore.training.checkpoint import hash_tree
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


@dataclass
class TinyConfig:
    dim: int = 4
    hidden: int = 16


class Tiny(PretrainedModel):
    """A small denoiser meeting the network contract net(x_t, t) -> shape of x_t."""

    config_class = TinyConfig

    def __init__(self, config: TinyConfig) -> None:
        super().__init__(config)
        self.inp = nn.Linear(config.dim + 1, config.hidden)
        self.out = nn.Linear(config.hidden, config.dim)
        self.seen_dtypes: list[torch.dtype] = []

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        h = self.inp(torch.cat([x, t[:, None].to(x.dtype)], dim=1))
        self.seen_dtypes.append(h.dtype)
        return self.out(torch.nn.functional.silu(h))


def flow_objective(model: nn.Module, batch: Any, generator: torch.Generator | None = None) -> Any:
    """Rectified-flow velocity MSE (t = 0 data, t = 1 noise), with an extra logged scalar."""
    (x0,) = batch
    t = torch.rand(x0.shape[0], generator=generator, device=x0.device)
    eps = torch.randn(x0.shape, generator=generator, device=x0.device)
    xt = (1 - t[:, None]) * x0 + t[:, None] * eps
    loss = ((model(xt, t) - (eps - x0)) ** 2).mean()
    return loss, {"t_mean": t.mean()}


def regression_objective(
    model: nn.Module, batch: Any, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Deterministic: a mean over the batch, so two half batches average to the full batch."""
    x, y = batch
    return ((model(x, torch.zeros(x.shape[0])) - y) ** 2).mean()


@pytest.fixture(autouse=True)
def _isolated_accelerate_and_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    # accelerate keeps process-wide singletons; each test builds its own Accelerator.
    reset_accelerate_state(distributed=True)


def data(n: int = 32, dim: int = 4, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, dim, generator=g) * 0.5 + 1.0)


def make_model(seed: int = 0) -> Tiny:
    torch.manual_seed(seed)
    return Tiny(TinyConfig())


def config(tmp: Path, **kw: Any) -> TrainConfig:
    base = dict(steps=6, lr=1e-2, log_every=2, checkpoint_every=None, ema_decay=None, progress_bar=False)
    base.update(kw)
    return TrainConfig(output_dir=str(tmp), **base)


def test_accumulating_two_half_batches_equals_one_full_batch(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 4, generator=g), torch.randn(32, 4, generator=g)
    ds = TensorDataset(x, y)
    results = []
    for batch, accum in [(8, 1), (4, 2)]:
        loader = DataLoader(ds, batch_size=batch, shuffle=False)
        trainer = Trainer(
            make_model(),
            regression_objective,
            loader,
            config(
                tmp_path / f"b{batch}", grad_accum_steps=accum, steps=6, tensorboard=False, max_grad_norm=0.5
            ),
        )
        summary = trainer.fit()
        assert summary.steps == 6
        results.append({k: v.clone() for k, v in trainer.unwrapped_model.state_dict().items()})
        reset_accelerate_state(distributed=True)
    for name in results[0]:
        torch.testing.assert_close(results[1][name], results[0][name], rtol=0, atol=1e-6)
    assert not torch.equal(results[0]["out.weight"], make_model().out.weight)  # it did train


@pytest.mark.parametrize("warmup", [True, False])
def test_ema_in_trainer_equals_ema_of_the_weight_trajectory(tmp_path: Path, warmup: bool) -> None:
    class Trajectory(Callback):
        def __init__(self) -> None:
            self.weights: dict[int, list[torch.Tensor]] = {}

        def on_step_end(self, trainer: Trainer, step: int) -> None:
            self.weights[step] = [p.detach().double().clone() for p in trainer.unwrapped_model.parameters()]

    traj = Trajectory()
    cfg = config(
        tmp_path,
        steps=10,
        ema_decay=0.7,
        ema_warmup=warmup,
        ema_warmup_steps=3,
        ema_update_every=2,
        tensorboard=False,
    )
    model = make_model()
    expected = [p.detach().double().clone() for p in model.parameters()]  # the average starts here
    trainer = Trainer(
        model, flow_objective, DataLoader(data(), batch_size=8, shuffle=True), cfg, callbacks=[traj]
    )
    summary = trainer.fit()
    # Updates at steps 2, 4, ..., 10: step 2 copies (<= 3), then n = 1, 2, ... averaging updates.
    for n, step in enumerate(range(2, 11, 2)):
        d = 0.0 if step <= 3 else (min(0.7, (1 + n) / (10 + n)) if warmup else 0.7)
        expected = [d * e + (1 - d) * w for e, w in zip(expected, traj.weights[step])]
    assert trainer.ema_model is not None
    for got, want in zip(trainer.ema_model.parameters(), expected):
        torch.testing.assert_close(got.double(), want, rtol=0, atol=1e-6)
    # The EMA model on disk is the same, in save_pretrained format.
    assert summary.ema_dir is not None
    on_disk = load_pretrained(summary.ema_dir)
    for got, want in zip(on_disk.parameters(), expected):
        torch.testing.assert_close(got.double(), want, rtol=0, atol=1e-6)
    assert not torch.allclose(expected[0], traj.weights[10][0])  # the EMA lags the weights


def test_compiled_training_equals_eager_and_saves_the_plain_model(tmp_path: Path) -> None:
    """compile=True: the Trainer runs torch.compile's module, but checkpoints, EMA and saved models hold
    the module that was passed in (no ``_orig_mod.`` keys), and the weights equal an eager run's. The
    training step (and only it) runs with dynamo's DDP graph splitting as configured (off by default)."""
    from safetensors import safe_open

    seen: list[object] = []

    def objective(model, batch, generator=None):
        seen.append(torch._dynamo.config.optimize_ddp)
        return flow_objective(model, batch, generator=generator)

    default = torch._dynamo.config.optimize_ddp
    results = []
    for compile in (False, True):
        model = make_model()
        cfg = config(
            tmp_path / str(compile),
            steps=4,
            compile=compile,
            ema_decay=0.5,
            checkpoint_every=4,
            tensorboard=False,
        )
        trainer = Trainer(model, objective, DataLoader(data(), batch_size=8, shuffle=True), cfg)
        assert isinstance(trainer.model, torch._dynamo.eval_frame.OptimizedModule) == compile
        seen.clear()
        summary = trainer.fit()
        assert seen == [default if not compile else False] * 4
        assert torch._dynamo.config.optimize_ddp == default
        assert trainer.unwrapped_model is model
        results.append({k: v.clone() for k, v in model.state_dict().items()})
        with safe_open(str(summary.last_checkpoint / "model.safetensors"), "pt") as f:
            assert set(f.keys()) == set(model.state_dict())
        assert set(load_pretrained(summary.model_dir).state_dict()) == set(model.state_dict())
        reset_accelerate_state(distributed=True)
    for name in results[0]:
        torch.testing.assert_close(results[1][name], results[0][name], rtol=0, atol=1e-6)


def test_jsonl_log_keys_lr_schedule_and_tensorboard(tmp_path: Path) -> None:
    cfg = config(tmp_path, steps=7, log_every=2, lr_schedule="cosine", warmup_steps=3, min_lr_ratio=0.1)
    summary = Trainer(make_model(), flow_objective, DataLoader(data(), batch_size=8, shuffle=True), cfg).fit()
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4, 6, 7]  # every log_every steps, and the last step
    for r in records:
        assert {"step", "loss", "lr", "grad_norm", "samples_per_sec", "t_mean", "epoch"} <= set(r)
        assert math.isfinite(r["loss"]) and r["grad_norm"] > 0 and r["samples_per_sec"] > 0
        assert 0.0 < r["t_mean"] < 1.0
        # The lr logged at step s is the one used by update s (0-based index s - 1).
        want = 1e-2 * lr_factor(
            r["step"] - 1, schedule="cosine", warmup_steps=3, total_steps=7, min_lr_ratio=0.1
        )
        assert r["lr"] == pytest.approx(want)
    assert summary.final_loss == pytest.approx(records[-1]["loss"])
    assert list((tmp_path / "tensorboard").rglob("events.out.tfevents.*"))
    # The final model is saved with save_pretrained and loads as the right class.
    loaded = load_pretrained(summary.model_dir)
    assert isinstance(loaded, Tiny)


def test_bf16_mixed_precision_runs_on_cpu(tmp_path: Path) -> None:
    model = make_model()
    cfg = config(tmp_path, steps=3, mixed_precision="bf16", device="cpu", tensorboard=False)
    summary = Trainer(model, flow_objective, DataLoader(data(), batch_size=8), cfg).fit()
    assert torch.bfloat16 in model.seen_dtypes  # the forward ran under autocast
    assert model.out.weight.dtype == torch.float32  # master weights stay fp32
    assert math.isfinite(summary.final_loss)


class Wrapped(nn.Module):
    """A composite model that saves itself (as diff-image's text-conditioned wrapper does)."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = make_model()

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.inner(x, t)

    def save_pretrained(self, directory: Path) -> Path:
        return self.inner.save_pretrained(Path(directory) / "inner")


def test_final_models_use_their_own_save_pretrained(tmp_path: Path) -> None:
    cfg = config(tmp_path, steps=2, device="cpu", tensorboard=False, ema_decay=0.9)
    summary = Trainer(Wrapped(), flow_objective, DataLoader(data(), batch_size=8), cfg).fit()
    for folder in (summary.model_dir, summary.ema_dir):
        assert folder is not None and (folder / "inner" / "config.json").is_file()
        assert not (folder / "model.safetensors").exists()
    opted_out = Wrapped()
    opted_out.supports_save_pretrained = False  # a wrapper whose parts cannot all be saved
    cfg = config(tmp_path / "bare", steps=2, device="cpu", tensorboard=False)
    summary = Trainer(opted_out, flow_objective, DataLoader(data(), batch_size=8), cfg).fit()
    assert (summary.model_dir / "model.safetensors").is_file() and not (summary.model_dir / "inner").exists()


def test_max_seconds_ends_training_cleanly_before_the_step_budget(tmp_path: Path) -> None:
    cfg = config(tmp_path, steps=1_000_000, device="cpu", tensorboard=False, max_seconds=0.3)
    summary = Trainer(make_model(), flow_objective, DataLoader(data(), batch_size=8), cfg).fit()
    assert summary.stopped_by_time
    assert 0 < summary.steps < 1_000_000
    assert summary.last_checkpoint is not None
    assert summary.last_checkpoint.name == f"checkpoint-{summary.steps:08d}"  # final checkpoint written
    Tiny.from_pretrained(summary.model_dir)  # and the final model
    with pytest.raises(ValueError, match="max_seconds"):
        TrainConfig(max_seconds=0)


def test_fp16_on_cpu_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^mixed_precision:"):
        Trainer(
            make_model(),
            flow_objective,
            DataLoader(data()),
            config(tmp_path, mixed_precision="fp16", device="cpu"),
        )


def test_non_scalar_loss_is_refused(tmp_path: Path) -> None:
    def per_sample(model: nn.Module, batch: Any, generator: torch.Generator | None = None) -> torch.Tensor:
        (x0,) = batch
        return (model(x0, torch.zeros(x0.shape[0])) ** 2).mean(dim=1)

    trainer = Trainer(
        make_model(), per_sample, DataLoader(data(), batch_size=8), config(tmp_path, tensorboard=False)
    )
    with pytest.raises(ValueError, match=r"^objective: must return a scalar"):
        trainer.fit()


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_checkpoint(tmp_path: Path) -> None:
    calls = {"n": 0}

    def goes_nan(model: nn.Module, batch: Any, generator: torch.Generator | None = None) -> Any:
        calls["n"] += 1
        loss, logs = flow_objective(model, batch, generator)
        return (loss * float("nan") if calls["n"] >= 8 else loss), logs

    hashes: dict[str, dict[str, str]] = {}

    class Snapshot(Callback):
        def on_checkpoint(self, trainer: Trainer, path: Path) -> None:
            hashes[path.name] = hash_tree(path)

    cfg = config(tmp_path, steps=20, log_every=3, checkpoint_every=5, ema_decay=0.9, tensorboard=False)
    loader = DataLoader(data(), batch_size=8, shuffle=True)
    trainer = Trainer(make_model(), goes_nan, loader, cfg, callbacks=[Snapshot()])
    with pytest.raises(NonFiniteLossError, match="at step 8;") as info:
        trainer.fit()
    assert "checkpoint-00000005" in str(info.value)
    last = latest_checkpoint(tmp_path / "checkpoints")
    assert last is not None and last.name == "checkpoint-00000005"
    assert hash_tree(last) == hashes["checkpoint-00000005"]  # byte-identical
    assert not (tmp_path / "model").exists()  # no final model from a broken run
    reset_accelerate_state(distributed=True)
    resumed = Trainer(make_model(1), flow_objective, loader, replace(cfg, resume="latest"))
    assert resumed.step == 5
    assert all(torch.isfinite(p).all() for p in resumed.unwrapped_model.parameters())


def test_batches_are_copied_non_blocking_also_in_a_resumed_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every batch, in a fresh run and in the rest of an epoch after a resume (accelerate's rebuilt
    loader), goes to the device with ``non_blocking=True`` (a blocking copy waits for the GPU)."""
    import accelerate.data_loader

    modes: list[bool] = []
    send = accelerate.data_loader.send_to_device

    def recording_send(*args: Any, non_blocking: bool = False, **kw: Any) -> Any:
        modes.append(non_blocking)
        return send(*args, non_blocking=non_blocking, **kw)

    monkeypatch.setattr(accelerate.data_loader, "send_to_device", recording_send)
    loader = DataLoader(data(), batch_size=4, shuffle=True)  # 8 batches an epoch
    Trainer(make_model(), flow_objective, loader, config(tmp_path, steps=3, checkpoint_every=3)).fit()
    assert modes and all(modes)
    modes.clear()
    reset_accelerate_state(distributed=True)
    resumed = Trainer(make_model(), flow_objective, loader, config(tmp_path, steps=6, resume="latest"))
    resumed.fit()
    assert resumed.step == 6 and resumed.epoch == 0  # ended inside the resumed epoch
    assert len(modes) >= 3 and all(modes)


def test_corrupt_or_missing_checkpoint_is_a_clear_error_and_nothing_is_overwritten(tmp_path: Path) -> None:
    loader = DataLoader(data(), batch_size=8, shuffle=True)
    cfg = config(tmp_path, steps=4, checkpoint_every=2, keep_last=2, ema_decay=0.9, tensorboard=False)
    Trainer(make_model(), flow_objective, loader, cfg).fit()
    reset_accelerate_state(distributed=True)
    weights = tmp_path / "checkpoints" / "checkpoint-00000004" / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-3] ^= 0xFF  # alter one byte of the tensor data
    weights.write_bytes(bytes(raw))
    before = hash_tree(tmp_path)
    more = config(tmp_path, steps=8, checkpoint_every=2, keep_last=2, ema_decay=0.9, tensorboard=False)
    with pytest.raises(CheckpointError, match=r"checkpoint-00000004/model\.safetensors is corrupt"):
        Trainer(make_model(), flow_objective, loader, replace(more, resume="latest"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Trainer(
            make_model(), flow_objective, loader, replace(more, resume=str(tmp_path / "checkpoints" / "nope"))
        )
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        Trainer(make_model(), flow_objective, loader, config(tmp_path / "empty", resume="latest"))
    # A fresh run into a folder that holds checkpoints would overwrite them: refused.
    with pytest.raises(ValueError, match=r"^output_dir:"):
        Trainer(make_model(), flow_objective, loader, more)
    assert hash_tree(tmp_path) == before
    # A checkpoint from another architecture is refused as not fitting.
    (tmp_path / "checkpoints" / "checkpoint-00000004").rename(tmp_path / "broken")
    with pytest.raises(CheckpointError, match="does not fit"):
        Trainer(Tiny(TinyConfig(hidden=8)), flow_objective, loader, replace(more, resume="latest"))


def test_keep_last_prunes_incomplete_folders_are_ignored_and_hooks_fire(tmp_path: Path) -> None:
    events: list[tuple[str, int]] = []

    class Recorder(Callback):
        def on_train_start(self, trainer: Trainer) -> None:
            events.append(("start", trainer.step))

        def on_log(self, trainer: Trainer, record: dict[str, Any]) -> None:
            events.append(("log", record["step"]))

        def on_checkpoint(self, trainer: Trainer, path: Path) -> None:
            assert (path / "manifest.json").is_file()  # complete when the hook runs
            events.append(("checkpoint", trainer.step))

        def on_train_end(self, trainer: Trainer, summary: Any) -> None:
            events.append(("end", summary.steps))

    cfg = config(tmp_path, steps=8, log_every=4, checkpoint_every=2, keep_last=2, tensorboard=False)
    Trainer(make_model(), flow_objective, DataLoader(data(), batch_size=8), cfg, callbacks=[Recorder()]).fit()
    assert events == [
        ("start", 0),
        ("checkpoint", 2),
        ("log", 4),
        ("checkpoint", 4),
        ("checkpoint", 6),
        ("log", 8),
        ("checkpoint", 8),
        ("end", 8),
    ]
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["checkpoint-00000006", "checkpoint-00000008"]
    # What a killed writer leaves behind is never taken for a checkpoint.
    (root / ".staging-checkpoint-00000010").mkdir()
    (root / "checkpoint-00000012").mkdir()  # no manifest: incomplete
    latest = latest_checkpoint(root)
    assert latest is not None and latest.name == "checkpoint-00000008"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_steps_issue_no_device_sync_on_gpu(tmp_path: Path) -> None:
    """Once warm, a Trainer step (batch copy to the GPU, diffcore's rectified-flow objective with CFG label
    dropout, forward and backward of a DiT with the fused kernels, clipping, fused AdamW, EMA, loss
    bookkeeping) never waits for the GPU, so the host can queue the next step while the GPU runs this one.
    Under ``torch.cuda.set_sync_debug_mode("error")`` any synchronising call raises (a blocking
    host-to-device batch copy, an ``.item()``, a ``float(tensor)``)."""
    from diffcore.nn.dit import DiT, dit_config
    from diffcore.training.objectives import rectified_flow

    cfg = dit_config("S", 2, depth=2, hidden_size=64, num_heads=4, input_size=(8, 8), num_classes=10)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 4, 8, 8, generator=g), torch.randint(0, 10, (64,), generator=g)
    dataset = [{"x": x[i], "y": y[i]} for i in range(64)]
    objective = rectified_flow(cond_dropout=0.1, null_cond={"y": 10})

    class NoSyncWindow(Callback):
        """Steps 3..steps run with synchronising CUDA calls turned into errors (steps 1-2 autotune)."""

        def on_step_end(self, trainer: Trainer, step: int) -> None:
            torch.cuda.set_sync_debug_mode("error" if 2 <= step < trainer.config.steps else "default")

    torch.manual_seed(0)
    model = DiT(cfg)
    train_cfg = config(
        tmp_path, steps=8, log_every=8, mixed_precision="bf16", ema_decay=0.99, tensorboard=False
    )
    loader = DataLoader(dataset, batch_size=16, shuffle=True, pin_memory=True)
    try:
        summary = Trainer(model, objective, loader, train_cfg, callbacks=[NoSyncWindow()]).fit()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert summary.steps == 8 and math.isfinite(summary.final_loss)


def _weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.unwrapped_model.state_dict().items()}


def test_resume_is_a_setting_a_fresh_run_refuses_a_used_output_dir_and_latest_continues_exactly(
    tmp_path: Path,
) -> None:
    def loader() -> DataLoader:
        return DataLoader(data(), batch_size=8, shuffle=True)  # 4 batches an epoch

    full = Trainer(
        make_model(), flow_objective, loader(), config(tmp_path / "full", steps=6, tensorboard=False)
    )
    full.fit()
    reference = _weights(full)
    reset_accelerate_state(distributed=True)
    first = tmp_path / "first"
    Trainer(make_model(), flow_objective, loader(), config(first, steps=3, checkpoint_every=3)).fit()
    reset_accelerate_state(distributed=True)
    with pytest.raises(ValueError) as info:
        Trainer(make_model(), flow_objective, loader(), config(first, steps=6))
    message = str(info.value)
    assert message.startswith(
        f"output_dir: {first} already holds a training run (checkpoints, log.jsonl, model"
    )
    assert "--set train.resume=latest" in message and "\n" not in message
    checkpoint = "checkpoints/checkpoint-00000003"
    for i, resume in enumerate(["latest", checkpoint, "auto"]):
        run = tmp_path / f"run{i}"
        shutil.copytree(first, run)
        target = str(run / resume) if resume == checkpoint else resume
        trainer = Trainer(make_model(7), flow_objective, loader(), config(run, steps=6, resume=target))
        assert (
            trainer.step == 3
        )  # weights, optimizer and data position from the checkpoint, not make_model(7)
        summary = trainer.fit()
        assert (summary.start_step, summary.steps) == (3, 6)
        for name, value in reference.items():
            assert torch.equal(trainer.unwrapped_model.state_dict()[name], value), (resume, name)
        reset_accelerate_state(distributed=True)
    # "auto" with nothing to resume starts fresh; the deprecated resume_from still works and says what replaces it.
    assert Trainer(make_model(), flow_objective, loader(), config(tmp_path / "new", resume="auto")).step == 0
    reset_accelerate_state(distributed=True)
    shutil.copytree(first, tmp_path / "old_api")
    with pytest.warns(DeprecationWarning, match=r"TrainConfig\.resume"):
        old = Trainer(
            make_model(),
            flow_objective,
            loader(),
            config(tmp_path / "old_api", steps=6),
            resume_from="latest",
        )
    assert old.config.resume == "latest" and old.step == 3


def test_an_exception_mid_save_leaves_the_previous_checkpoint_intact_and_loadable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hashes: dict[str, dict[str, str]] = {}

    class Snapshot(Callback):
        def on_checkpoint(self, trainer: Trainer, path: Path) -> None:
            hashes[path.name] = hash_tree(path)

    real_save = torch.save

    def dies_while_writing(obj: Any, f: Any, *args: Any, **kw: Any) -> None:
        if "checkpoint-00000004" in str(f):
            Path(f).write_bytes(b"half an optimizer state")
            raise OSError("no space left on device")
        real_save(obj, f, *args, **kw)

    monkeypatch.setattr(torch, "save", dies_while_writing)
    loader = DataLoader(data(), batch_size=8, shuffle=True)
    cfg = config(tmp_path, steps=6, checkpoint_every=2, ema_decay=0.9, tensorboard=False)
    with pytest.raises(OSError, match="no space left"):
        Trainer(make_model(), flow_objective, loader, cfg, callbacks=[Snapshot()]).fit()
    root = tmp_path / "checkpoints"
    latest = latest_checkpoint(root)
    assert latest is not None and latest.name == "checkpoint-00000002"
    assert hash_tree(latest) == hashes["checkpoint-00000002"]
    staging = root / ".staging-checkpoint-00000004"
    assert sorted(p.name for p in staging.iterdir()) == [
        "ema.safetensors",
        "model.safetensors",
        "rng-0.safetensors",
    ]
    monkeypatch.undo()
    reset_accelerate_state(distributed=True)
    resumed = Trainer(make_model(1), flow_objective, loader, replace(cfg, resume="latest"))
    assert resumed.step == 2
    assert resumed.fit().steps == 6
    assert sorted(p.name for p in root.iterdir()) == [f"checkpoint-0000000{s}" for s in (2, 4, 6)]


def test_a_checkpoint_moved_aside_before_its_replacement_arrived_is_restored(tmp_path: Path) -> None:
    from diffcore.training import checkpoint as ckpt

    cfg = config(tmp_path, steps=2, checkpoint_every=2, tensorboard=False)
    Trainer(make_model(), flow_objective, DataLoader(data(), batch_size=8), cfg).fit()
    root = tmp_path / "checkpoints"
    before = hash_tree(root / "checkpoint-00000002")
    # publish() killed between its two renames: the old folder is aside, the new one still staged.
    (root / "checkpoint-00000002").rename(root / ".trash-checkpoint-00000002")
    (root / ".staging-checkpoint-00000002").mkdir()
    (root / ".trash-checkpoint-00000001").mkdir()  # a half-deleted pruned folder: no manifest
    ckpt.remove_leftovers(root)
    assert sorted(p.name for p in root.iterdir()) == ["checkpoint-00000002"]
    assert hash_tree(root / "checkpoint-00000002") == before


@pytest.mark.parametrize(("steps", "warns"), [(4, True), (5, False)])
def test_a_run_ending_with_more_than_five_percent_of_the_start_in_its_ema_warns(
    tmp_path: Path, steps: int, warns: bool
) -> None:
    """Without warm-up at decay 0.5 the EMA holds 0.5^N of the starting weights: 6.25% after 4 updates
    (warned, in Python and in the last log record), 3.1% after 5 (silent)."""
    cfg = config(tmp_path, steps=steps, log_every=2, ema_decay=0.5, ema_warmup=False, tensorboard=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Trainer(make_model(), flow_objective, DataLoader(data(), batch_size=8), cfg).fit()
    ema_warnings = [str(w.message) for w in caught if str(w.message).startswith("ema:")]
    records = read_run_log(tmp_path)
    assert [r["step"] for r in records] == sorted({*range(2, steps + 1, 2), steps})
    if warns:
        assert len(ema_warnings) == 1
        assert ema_warnings[0].startswith(
            f"ema: after {steps} updates the EMA weights are still 6.2% the weights"
        )
        assert records[-1]["warning"] == ema_warnings[0]
    else:
        assert ema_warnings == []
    assert all("warning" not in r for r in records[: -1 if warns else None])


def test_progress_is_a_plain_line_every_log_every_steps_when_stderr_is_not_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = config(tmp_path / "on", steps=6, log_every=2, progress_bar=True, tensorboard=False)
    Trainer(make_model(), flow_objective, DataLoader(data(), batch_size=8), cfg).fit()
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("train")]
    records = read_run_log(tmp_path / "on")
    assert [r["step"] for r in records] == [2, 4, 6]
    assert len(lines) == 3
    for line, r in zip(lines, records):
        head = (
            f"train step {r['step']}/6 ({100 * r['step'] / 6:.0f}%): loss {r['loss']:.4g}, lr {r['lr']:.3g}, "
        )
        assert line.startswith(head), (line, head)
        assert re.fullmatch(r"[0-9.e+]+ steps/s, ETA \d+:\d\d:\d\d", line[len(head) :]), line
    assert lines[-1].endswith("ETA 0:00:00")
    assert "\r" not in err and "%|" not in err  # no bar redraws in a log file
    cfg = config(tmp_path / "off", steps=6, log_every=2, progress_bar=False, tensorboard=False)
    reset_accelerate_state(distributed=True)
    Trainer(make_model(), flow_objective, DataLoader(data(), batch_size=8), cfg).fit()
    assert "train" not in capsys.readouterr().err


def test_progress_on_a_terminal_is_a_bar_with_loss_steps_per_second_and_eta(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    cfg = config(tmp_path, steps=4, log_every=2, progress_bar=True, tensorboard=False)
    Trainer(make_model(), flow_objective, DataLoader(data(), batch_size=8), cfg).fit()
    monkeypatch.undo()
    final = terminal.getvalue().split("\r")[-1]
    last = read_run_log(tmp_path)[-1]
    assert re.search(r"^train 100%\|.*\| 4/4 \[[0-9:]+, ETA 00:00, [0-9.]+ steps/s, ", final), final
    assert f"loss={last['loss']:.4g}" in final
    assert "train step" not in terminal.getvalue()


class Dropping(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(5, 32), nn.Dropout(0.5), nn.SiLU(), nn.Linear(32, 4))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x, t[:, None]], dim=1))


def test_the_trainer_never_seeds_the_global_rng_and_dropout_follows_the_callers(tmp_path: Path) -> None:
    def train(out: str, caller_seed: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        model = Dropping()  # the same initial weights every time
        torch.manual_seed(caller_seed)
        random.seed(caller_seed)
        np.random.seed(caller_seed)
        states = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())
        cfg = config(tmp_path / out, steps=4, tensorboard=False, seed=3)
        trainer = Trainer(model, flow_objective, DataLoader(data(), batch_size=8, shuffle=True), cfg)
        assert torch.equal(torch.get_rng_state(), states[0])  # building the Trainer drew and seeded nothing
        assert random.getstate() == states[1] and (np.random.get_state()[1] == states[2]).all()
        trainer.fit()
        reset_accelerate_state(distributed=True)
        return _weights(trainer)

    a, b, c = train("a", 1), train("b", 1), train("c", 2)
    assert all(torch.equal(a[k], b[k]) for k in a)  # same caller RNG, same config.seed: the same run
    assert not torch.equal(a["net.0.weight"], c["net.0.weight"])  # other dropout masks: another run
