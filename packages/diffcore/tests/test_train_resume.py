"""Exact resume: a run killed with SIGKILL and resumed ends bit-identical to an uninterrupted one.

The training script below runs as a subprocess (to be killed) and in-process (for the reference
and the resume). It exercises everything resume has to restore: shuffled data order and position
inside an epoch, gradient accumulation with a short last window per epoch (7 micro-batches, 2 per
step), dropout (the global torch RNG, which the script seeds; the Trainer does not), the objective's noise
generator, AdamW state, cosine LR, EMA.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from diffcore.training._compat import reset_accelerate_state

SCRIPT = """
import sys
import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from diffcore.pretrained import PretrainedModel
from diffcore.training import Callback, TrainConfig, Trainer


@dataclass
class NetConfig:
    dim: int = 4
    hidden: int = 32


class Net(PretrainedModel):
    config_class = NetConfig

    def __init__(self, config):
        super().__init__(config)
        self.inp = nn.Linear(config.dim + 1, config.hidden)
        self.drop = nn.Dropout(0.2)
        self.out = nn.Linear(config.hidden, config.dim)

    def forward(self, x, t):
        h = torch.nn.functional.silu(self.inp(torch.cat([x, t[:, None]], dim=1)))
        return self.out(self.drop(h))


def objective(model, batch, generator=None):
    (x0,) = batch
    t = torch.rand(x0.shape[0], generator=generator)
    eps = torch.randn(x0.shape, generator=generator)
    xt = (1 - t[:, None]) * x0 + t[:, None] * eps
    return ((model(xt, t) - (eps - x0)) ** 2).mean()


class Slow(Callback):
    def __init__(self, after):
        self.after = after

    def on_step_end(self, trainer, step):
        if step > self.after:
            time.sleep(0.25)


def main(output_dir, steps, resume=None, slow_after=None, checkpoint_every=5):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = Net(NetConfig())
    data = torch.randn(56, 4, generator=torch.Generator().manual_seed(123))
    loader = DataLoader(TensorDataset(data), batch_size=8, shuffle=True)
    config = TrainConfig(
        steps=steps, lr=3e-3, lr_schedule="cosine", warmup_steps=4, grad_accum_steps=2, max_grad_norm=1.0,
        ema_decay=0.9, ema_warmup_steps=2, log_every=3, checkpoint_every=checkpoint_every, keep_last=20,
        output_dir=output_dir, seed=7, progress_bar=False, tensorboard=False, resume=resume,
    )
    callbacks = [Slow(slow_after)] if slow_after is not None else []
    trainer = Trainer(model, objective, loader, config, callbacks=callbacks)
    return trainer, trainer.fit()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), slow_after=int(sys.argv[3]))
"""

STEPS = 20


@pytest.fixture(autouse=True)
def _isolated_accelerate_and_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
    reset_accelerate_state(distributed=True)


def load_script(folder: Path) -> ModuleType:
    """Import SCRIPT as a module (its dataclass needs a real module)."""
    path = folder / "train_resume_script.py"
    path.write_text(SCRIPT)
    spec = importlib.util.spec_from_file_location("train_resume_script", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def run_in_process(output_dir: Path, **kw: Any) -> tuple[Any, Any]:
    script = sys.modules.get("train_resume_script") or load_script(output_dir.parent)
    trainer, summary = script.main(str(output_dir), STEPS, **kw)
    reset_accelerate_state(distributed=True)
    return trainer, summary


def full_state(trainer: Any) -> dict[str, torch.Tensor]:
    """Model, EMA and AdamW moments, flattened to named tensors."""
    state = {f"model.{k}": v for k, v in trainer.unwrapped_model.state_dict().items()}
    state.update({f"ema.{k}": v for k, v in trainer.ema.state_dict().items()})
    for i, s in trainer.optimizer.state_dict()["state"].items():
        state.update({f"opt.{i}.{k}": torch.as_tensor(v) for k, v in s.items()})
    return {k: v.detach().clone() for k, v in state.items()}


def assert_same(resumed: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> None:
    assert resumed.keys() == reference.keys()
    for name in reference:
        torch.testing.assert_close(resumed[name], reference[name], rtol=0, atol=1e-6, msg=name)
    identical = [n for n in reference if torch.equal(resumed[n], reference[n])]
    assert len(identical) == len(reference), f"not bit-identical: {sorted(set(reference) - set(identical))}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, torch.Tensor], Path, list[dict]]:
    out = tmp_path_factory.mktemp("uninterrupted")
    threads = torch.get_num_threads()
    try:
        trainer, summary = run_in_process(out, checkpoint_every=2)
    finally:
        torch.set_num_threads(threads)
    assert summary.steps == STEPS
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return full_state(trainer), out, records


def test_sigkilled_run_resumes_bit_identical(tmp_path: Path, reference: Any) -> None:
    ref_state, _, ref_records = reference
    script = tmp_path / "train_script.py"
    script.write_text(SCRIPT)
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(out), str(STEPS), "8"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    target = out / "checkpoints" / "checkpoint-00000010" / "manifest.json"
    deadline = time.monotonic() + 180
    while not target.exists():
        if proc.poll() is not None:
            pytest.fail(
                f"training script exited early ({proc.returncode}): {proc.stderr.read().decode()[-2000:]}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("training script wrote no checkpoint-00000010 within 180 s")
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL  # it really died mid-run
    assert not (out / "model").exists()

    trainer, summary = run_in_process(out, resume="latest")
    assert summary.start_step in (10, 15) and summary.steps == STEPS
    assert_same(full_state(trainer), ref_state)
    # The log reads as one run: the killed run's lines past the checkpoint were dropped.
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [r["step"] for r in ref_records]
    # A log window that straddles the resume point only averages the steps after it; the others match.
    start = summary.start_step
    same = [i for i, r in enumerate(ref_records) if r["step"] <= start or r["step"] - 3 >= start]
    assert len(same) >= len(ref_records) - 1
    assert [records[i]["loss"] for i in same] == pytest.approx(
        [ref_records[i]["loss"] for i in same], rel=1e-6
    )
    assert not list((out / "checkpoints").glob(".staging-*"))


@pytest.mark.parametrize("step", [4, 6])  # 4 ends an epoch (7 micro-batches = 4 steps); 6 is mid-epoch
def test_resume_from_epoch_end_and_mid_epoch(tmp_path: Path, reference: Any, step: int) -> None:
    ref_state, ref_dir, _ = reference
    name = f"checkpoint-{step:08d}"
    state = json.loads((ref_dir / "checkpoints" / name / "trainer_state.json").read_text())
    assert state["batches_in_epoch"] == (7 if step == 4 else 4)
    shutil.copytree(ref_dir / "checkpoints" / name, tmp_path / "checkpoints" / name)
    trainer, summary = run_in_process(tmp_path, resume="latest", checkpoint_every=2)
    assert summary.start_step == step
    assert_same(full_state(trainer), ref_state)
