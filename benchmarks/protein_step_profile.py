"""Where the time of one diff-protein backbone training step goes (the FULL benchmark's model and batch).

Times, per step, on one device: drawing and collating a batch (``DataLoader`` over the synthetic set), the
objective's forward and backward plus AdamW on a batch already on the device, and the same under
``torch.compile``; a ``torch.profiler`` table of the eager step lists the busiest kernels and the
device-busy fraction (how much of the wall time the GPU computes, the rest being launch and host work).

    python benchmarks/protein_step_profile.py --device cuda --out protein_step_profile.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from diff_protein.bench import (
    FULL,
    BackboneList,
    backbone_model_config,
    backbone_objective_config,
    backbone_process_config,
    generate_synthetic,
)
from diff_protein.data.synthetic import SyntheticBackboneConfig
from diff_protein.diffusion.objective import BackboneObjective, collate_frames
from diff_protein.models.ipa import FrameDenoiser
from diff_protein.pipeline import make_process
from torch.utils.data import DataLoader


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_steps(step, batches, device: torch.device, warmup: int, steps: int) -> float:
    """Mean seconds per call of ``step(batch)`` over ``steps`` calls after ``warmup`` calls."""
    for i in range(warmup):
        step(batches[i % len(batches)])
    _sync(device)
    start = time.perf_counter()
    for i in range(steps):
        step(batches[i % len(batches)])
    _sync(device)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--chains", type=int, default=256)
    parser.add_argument("--batch", type=int, default=FULL.backbone_batch)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--compile", action="store_true", help="also time the model under torch.compile")
    parser.add_argument("--out", default="protein_step_profile.json")
    args = parser.parse_args()
    device = torch.device(args.device)
    s = FULL
    data_cfg = SyntheticBackboneConfig(num_samples=args.chains, min_length=s.min_length,
                                       max_length=s.max_length, topologies=s.topologies)  # fmt: skip
    data = BackboneList(generate_synthetic(data_cfg, workers=-1))
    loader = DataLoader(data, batch_size=args.batch, shuffle=True, collate_fn=collate_frames, drop_last=True)
    start = time.perf_counter()
    batches = [b for _, b in zip(range(4), loader)]
    data_s = (time.perf_counter() - start) / len(batches)
    batches = [{k: v.to(device) for k, v in b.items()} for b in batches]
    torch.manual_seed(0)
    model = FrameDenoiser(backbone_model_config(s)).to(device)
    objective = BackboneObjective(
        make_process(s.process, **backbone_process_config(s)), backbone_objective_config(s)
    )
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")

    def step_with(net):
        def step(batch):
            loss, _ = objective(net, batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)

        return step

    result = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
              "batch": args.batch, "data_s_per_batch": data_s}  # fmt: skip
    result["eager_s_per_step"] = time_steps(step_with(model), batches, device, 3, args.steps)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        result["eager_bf16_s_per_step"] = time_steps(step_with(model), batches, device, 3, args.steps)
    if device.type == "cuda":
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            start = time.perf_counter()
            for b in batches:
                step_with(model)(b)
            _sync(device)
            wall = time.perf_counter() - start
        events = prof.key_averages()
        busy = sum(e.self_device_time_total for e in events) / 1e6
        result["profile_wall_s"] = wall
        result["profile_device_busy_s"] = busy
        result["device_busy_fraction"] = busy / wall
        result["kernel_launches_per_step"] = sum(
            e.count for e in events if e.device_type.name == "CUDA"
        ) / len(batches)
        print(events.table(sort_by="self_device_time_total", row_limit=20))
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    if args.compile:
        compiled = torch.compile(model, dynamic=True)
        start = time.perf_counter()
        step_with(compiled)(batches[0])
        _sync(device)
        result["compile_first_step_s"] = time.perf_counter() - start
        result["compiled_s_per_step"] = time_steps(step_with(compiled), batches, device, 6, args.steps)
    print(json.dumps(result, indent=2))
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
