"""Two-process DDP on CPU (gloo, launched with torchrun): a resume mid-epoch is bit-identical.

About a minute of CPU (two torchrun launches of two processes each), so it runs only when
``DIFFCORE_DDP_TESTS=1`` is set. Checks the multi-process paths: per-rank RNG files, main-process writes behind barriers, the
sharded seedable sampler and ``skip_first_batches`` on every rank.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = """
import os
import sys

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from diffcore.training import TrainConfig, Trainer


def objective(model, batch, generator=None):
    (x0,) = batch
    t = torch.rand(x0.shape[0], 1, generator=generator)
    eps = torch.randn(x0.shape, generator=generator)
    return ((model(torch.cat([(1 - t) * x0 + t * eps, t], 1)) - (eps - x0)) ** 2).mean()


out, resume = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else None)
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(5, 32), nn.Dropout(0.1), nn.SiLU(), nn.Linear(32, 4))
torch.manual_seed(100 + int(os.environ["RANK"]))  # dropout masks differ per process (the Trainer seeds no RNG)
data = TensorDataset(torch.randn(60, 4, generator=torch.Generator().manual_seed(1)))
config = TrainConfig(
    steps=12, lr=1e-2, grad_accum_steps=2, ema_decay=0.9, log_every=2, checkpoint_every=3, keep_last=10,
    output_dir=out, progress_bar=False, tensorboard=False, seed=3, resume=resume,
)
trainer = Trainer(model, objective, DataLoader(data, batch_size=4, shuffle=True), config)
summary = trainer.fit()
assert trainer.accelerator.num_processes == 2, trainer.accelerator.num_processes
if trainer.accelerator.is_main_process:
    state = {k: v.clone() for k, v in trainer.unwrapped_model.state_dict().items()}
    state.update({"ema." + k: v for k, v in trainer.ema.state_dict().items()})
    torch.save(state, out + "/final.pt")
trainer.accelerator.end_training()
"""


def torchrun(script: Path, *args: str) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(script), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("DIFFCORE_DDP_TESTS") != "1", reason="set DIFFCORE_DDP_TESTS=1 (about 1 min)"
)
def test_two_process_resume_mid_epoch_is_bit_identical(tmp_path: Path) -> None:
    script = tmp_path / "ddp_script.py"
    script.write_text(SCRIPT)
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    torchrun(script, str(full))
    # Step 6 is mid-epoch: 60 samples / (2 ranks x 4) = 8 micro-batches per rank, 4 steps per epoch.
    name = "checkpoint-00000006"
    assert (full / "checkpoints" / name / "rng-1.safetensors").is_file()
    shutil.copytree(full / "checkpoints" / name, resumed / "checkpoints" / name)
    torchrun(script, str(resumed), "latest")
    a = torch.load(full / "final.pt", weights_only=True)
    b = torch.load(resumed / "final.pt", weights_only=True)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
