"""FSDP2 training on CPU: two gloo processes (torch.multiprocessing) against one process.

A DiT (its blocks are the FSDP units) trains on a fixed set of ``(x0, eps, t)`` triples, so the loss of a
sample does not depend on which process draws it: two processes with 4 samples each per micro-batch see
the same 8 samples per micro-batch as one process with 8. Checked:

- the two-process FSDP run ends where the one-process run ends (weights, EMA) to float32 tolerance;
- a two-process run SIGKILLed after its step-4 checkpoint, resumed by two new processes, ends bit-identical
  to an uninterrupted two-process run (weights, EMA), and so do the two runs' sharded step-8 checkpoints
  (model, EMA, AdamW moments);
- that sharded checkpoint, written by two processes, loads into one process exactly, and one process
  continuing from the step-4 one ends where the two-process run ends.
"""

from __future__ import annotations

import importlib
import os
import shutil
import signal
import socket
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp
from diffcore.training._compat import reset_accelerate_state
from safetensors.torch import load_file

SCRIPT = """
import os
import time

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, TensorDataset

from diffcore.nn.dit import DiT, DiTConfig
from diffcore.nn.lora import add_lora
from torch.distributed.fsdp import FSDPModule
from diffcore.training import Callback, TrainConfig, Trainer

STEPS = 8


def objective(model, batch, generator=None):
    x0, eps, t = batch
    xt = (1 - t[:, None, None, None]) * x0 + t[:, None, None, None] * eps
    return ((model(xt, t) - (eps - x0)) ** 2).mean()


class Slow(Callback):
    def __init__(self, after):
        self.after = after

    def on_step_end(self, trainer, step):
        if step > self.after:
            time.sleep(1.0)


def data():
    g = torch.Generator().manual_seed(5)
    return TensorDataset(torch.randn(32, 2, 4, 4, generator=g), torch.randn(32, 2, 4, 4, generator=g),
                         torch.rand(32, generator=g))


def make_model():
    torch.manual_seed(0)
    return DiT(DiTConfig(input_size=(4, 4), patch_size=2, in_channels=2, hidden_size=16, depth=2, num_heads=2,
                         num_classes=0, fused_kernels=False))


def pretrained_model():
    # A DiT away from its initialisation (whose zero output layer would pass LoRA no gradient).
    model = make_model()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return model


def build(output_dir, batch_size, resume=None, slow_after=None, steps=STEPS, lora=False, **settings):
    model = pretrained_model() if lora else make_model()
    if lora:
        add_lora(model, rank=2)
    config = TrainConfig(
        steps=steps, lr=3e-3, grad_accum_steps=2, max_grad_norm=1.0, ema_decay=0.9, log_every=2,
        checkpoint_every=2, keep_last=10, output_dir=output_dir, seed=3, progress_bar=False,
        tensorboard=False, resume=resume, sharding="fsdp2", **settings,
    )
    callbacks = [Slow(slow_after)] if slow_after is not None else []
    loader = DataLoader(data(), batch_size=batch_size, shuffle=True)
    return Trainer(model, objective, loader, config, callbacks=callbacks)


def main(output_dir, batch_size, **kw):
    trainer = build(output_dir, batch_size, **kw)
    return trainer, trainer.fit()


def worker(rank, world, port, jobs):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    for output_dir, resume, slow_after, wait_for, settings in jobs:
        while wait_for is not None and not os.path.exists(wait_for):
            time.sleep(0.05)
        trainer, _ = main(output_dir, 4, resume=resume, slow_after=slow_after, **settings)
        assert trainer.sharded and trainer.accelerator.num_processes == world
        assert all(isinstance(block, FSDPModule) for block in trainer.model.blocks)
    dist.destroy_process_group()
"""


@pytest.fixture(scope="module")
def script(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """SCRIPT as an importable module (spawned processes import the worker by name)."""
    folder = tmp_path_factory.mktemp("fsdp_script")
    (folder / "fsdp_train_script.py").write_text(SCRIPT)
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module("fsdp_train_script")
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("fsdp_train_script", None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


Job = tuple[str, "str | None", "int | None", "str | None", dict]


def spawn(script: ModuleType, jobs: list[Job]) -> Any:
    """Start two worker processes running ``jobs`` (output folder, resume, slow after step, a file to wait
    for before starting, more ``TrainConfig`` settings) one after another; returns the process context."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    return mp.start_processes(
        script.worker, args=(2, free_port(), jobs), nprocs=2, join=False, start_method="spawn"
    )


def join(context: Any, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for p in context.processes:
                p.kill()
            pytest.fail(f"the two FSDP processes did not finish within {timeout} s")


def run_one_process(script: ModuleType, output_dir: Path, **kw: Any) -> Any:
    threads = torch.get_num_threads()
    try:
        trainer, _ = script.main(str(output_dir), 8, **kw)
    finally:
        torch.set_num_threads(threads)
        reset_accelerate_state(distributed=True)
    return trainer


def weights(run: Path) -> dict[str, torch.Tensor]:
    state = {f"model.{k}": v for k, v in load_file(run / "model" / "model.safetensors").items()}
    state.update({f"ema.{k}": v for k, v in load_file(run / "model_ema" / "model.safetensors").items()})
    return state


def trainer_state(trainer: Any) -> dict[str, torch.Tensor]:
    """Model, EMA and AdamW moments of a one-process trainer, as named tensors."""
    state = {f"model.{k}": v for k, v in trainer.unwrapped_model.state_dict().items()}
    ema = trainer.ema.state_dict()
    state.update({f"ema.{k.removeprefix('module.')}": v for k, v in ema.items() if k != "n_averaged"})
    names = dict(enumerate(n for n, _ in trainer.unwrapped_model.named_parameters()))
    for i, s in trainer.optimizer.state_dict()["state"].items():
        state.update({f"opt.{names[i]}.{k}": torch.as_tensor(v) for k, v in s.items()})
    return {k: v.detach().clone() for k, v in state.items()}


@pytest.fixture(scope="module")
def runs(script: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A two-process run killed after step 4 and resumed, an uninterrupted one, a LoRA one with activation
    checkpointing, and the one-process runs of both.

    Two pairs of processes start together (their start-up, importing torch, is most of the time): one
    pair trains until it is killed; the other trains the uninterrupted and LoRA runs, then waits for the
    kill and resumes the killed run.
    """
    root = tmp_path_factory.mktemp("fsdp_runs")
    killed, full, single, dead = root / "killed", root / "full", root / "single", root / "killed.dead"
    lora, lora_single = root / "lora", root / "lora_single"
    lora_settings = {"lora": True, "activation_checkpointing": True}
    survivor = spawn(
        script,
        [
            (str(full), None, None, None, {}),
            (str(lora), None, None, None, lora_settings),
            (str(killed), "latest", None, str(dead), {}),
        ],
    )
    context = spawn(script, [(str(killed), None, 4, None, {})])
    try:
        kill_after_checkpoint(context, killed / "checkpoints" / "checkpoint-00000004" / "manifest.json")
        assert not (killed / "model").exists()
        dead.touch()
        run_one_process(script, single)  # in this process while the two others train
        run_one_process(script, lora_single, **lora_settings)
        join(survivor)
    finally:  # on a failure, leave no process behind (the survivors would wait for the kill forever)
        for p in [*context.processes, *survivor.processes]:
            if p.is_alive():
                p.kill()
    return {"killed": killed, "full": full, "single": single, "lora": lora, "lora_single": lora_single}


pytestmark = pytest.mark.slow


def kill_after_checkpoint(context: Any, target: Path) -> None:
    """SIGKILL both processes of ``context`` as soon as ``target`` (a checkpoint's manifest) exists."""
    deadline = time.monotonic() + 240
    while not target.exists():
        if any(p.exitcode is not None for p in context.processes):
            pytest.fail(f"the two-process run ended before writing {target}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {target} within 240 s")
        time.sleep(0.05)
    for p in context.processes:
        os.kill(p.pid, signal.SIGKILL)
    for p in context.processes:
        p.join()
        assert p.exitcode == -signal.SIGKILL


def test_two_process_fsdp_matches_one_process(runs: dict[str, Path], script: ModuleType) -> None:
    two, one = weights(runs["full"]), weights(runs["single"])
    assert two.keys() == one.keys()
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=2e-5, msg=name)
    # Training moved the weights far beyond that tolerance (8 steps at lr 3e-3).
    initial = script.make_model().state_dict()
    assert max((two[f"model.{k}"] - v).abs().max().item() for k, v in initial.items()) > 1e-2


def test_sigkilled_two_process_run_resumes_bit_identical(runs: dict[str, Path], script: ModuleType) -> None:
    resumed, full = weights(runs["killed"]), weights(runs["full"])
    assert resumed.keys() == full.keys()
    assert [k for k in full if not torch.equal(resumed[k], full[k])] == []
    # The sharded checkpoints of step 8 hold the same model, EMA and AdamW moments.
    name = "checkpoint-00000008"
    assert (runs["killed"] / "checkpoints" / name / "sharded" / ".metadata").is_file()
    a = trainer_state(load_into_one_process(script, runs["killed"] / "checkpoints" / name))
    b = trainer_state(load_into_one_process(script, runs["full"] / "checkpoints" / name))
    assert a.keys() == b.keys() and any(k.endswith("exp_avg_sq") for k in a)
    assert [k for k in a if not torch.equal(a[k], b[k])] == []


def load_into_one_process(script: ModuleType, checkpoint: Path) -> Any:
    """A one-process trainer resumed from ``checkpoint`` (not trained further)."""
    try:
        trainer = script.build(str(checkpoint.parent.parent), 8, resume=str(checkpoint))
        assert trainer.accelerator.num_processes == 1
    finally:
        reset_accelerate_state(distributed=True)
    return trainer


def test_two_process_checkpoint_loads_into_one_process(runs: dict[str, Path], script: ModuleType) -> None:
    full = weights(runs["full"])
    trainer = load_into_one_process(script, runs["full"] / "checkpoints" / "checkpoint-00000008")
    assert not trainer.sharded
    state = trainer_state(trainer)
    for name, value in full.items():
        assert torch.equal(state[name], value), name
    assert int(trainer.ema.state_dict()["n_averaged"]) == 8


def test_one_process_continues_a_two_process_checkpoint(
    runs: dict[str, Path], script: ModuleType, tmp_path: Path
) -> None:
    name = "checkpoint-00000004"
    shutil.copytree(runs["full"] / "checkpoints" / name, tmp_path / "checkpoints" / name)
    with pytest.warns(UserWarning, match="num_processes: 2 -> 1"):
        run_one_process(script, tmp_path, resume="latest")
    one, two = weights(tmp_path), weights(runs["full"])
    for key in two:
        torch.testing.assert_close(one[key], two[key], rtol=1e-4, atol=2e-5, msg=key)


def test_lora_with_activation_checkpointing_under_fsdp_matches_one_process(
    runs: dict[str, Path], script: ModuleType
) -> None:
    two, one = weights(runs["lora"]), weights(runs["lora_single"])
    assert two.keys() == one.keys()
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=2e-5, msg=name)
    initial = script.pretrained_model().state_dict()
    lora_b = [k for k in two if k.startswith("model.") and "lora_B" in k]
    assert lora_b and all(two[k].abs().max() > 1e-3 for k in lora_b)  # the adapters trained (B starts at 0)
    for key, value in initial.items():  # the base weights stayed frozen
        base = key.replace(".weight", ".base_layer.weight").replace(".bias", ".base_layer.bias")
        assert torch.equal(two.get(f"model.{key}", two.get(f"model.{base}")), value), key
