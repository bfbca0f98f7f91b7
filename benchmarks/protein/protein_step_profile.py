"""Where the time of one diff-protein backbone training step goes (the FULL benchmark's model and batch).

Times, per step, on one device: drawing and collating a batch (``DataLoader`` over the synthetic set), the
objective's forward and backward plus AdamW on a batch already on the device (eager; eager on batches
padded to the longest chain; replayed from CUDA graphs on the padded batches, after checking that the
graphed loss and gradients equal the eager ones), and optionally under ``torch.compile``; a
``torch.profiler`` table of the eager step lists the busiest kernels and the device-busy fraction (how
much of the wall time the GPU computes, the rest being launch and host work).

    python benchmarks/protein/protein_step_profile.py --device cuda     # protein_step_profile-h100.json

Writes ``benchmarks/results/protein_step_profile-<device>.json`` (``--out`` elsewhere), after each part.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch
from diff_protein.bench import (
    FULL,
    backbone_model_config,
    backbone_objective_config,
    backbone_process_config,
    synthetic_chains,
)
from diff_protein.diffusion.objective import BackboneObjective, collate_frames
from diff_protein.models.ipa import FrameDenoiser
from diff_protein.pipeline import make_process
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from results_io import write_result


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


def loss_and_grads(model, objective, batch, device: torch.device, seed: int) -> tuple[float, list]:
    """The objective's loss and parameter gradients with every random draw seeded by ``seed``."""
    torch.manual_seed(seed)
    generator = torch.Generator(device=device).manual_seed(seed)
    model.zero_grad(set_to_none=True)
    loss, _ = objective(model, batch, generator)
    loss.backward()
    grads = [p.grad.detach().clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad(set_to_none=True)
    return float(loss), grads


def compare_graphed(model, eager, graphed, batch, device: torch.device) -> dict[str, float]:
    """Largest relative difference of loss and gradients between the eager and the graphed objective, over
    seeds with and without the self-conditioning pass."""
    worst_loss = worst_grad = 0.0
    for seed in range(4):
        loss_e, grads_e = loss_and_grads(model, eager, batch, device, seed)
        loss_g, grads_g = loss_and_grads(model, graphed, batch, device, seed)
        worst_loss = max(worst_loss, abs(loss_e - loss_g) / max(abs(loss_e), 1e-12))
        for a, b in zip(grads_e, grads_g, strict=True):
            worst_grad = max(worst_grad, float((a - b).norm() / a.norm().clamp_min(1e-12)))
    return {"graphed_max_rel_loss_diff": worst_loss, "graphed_max_rel_grad_diff": worst_grad}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--chains", type=int, default=256)
    parser.add_argument("--batch", type=int, default=FULL.backbone_batch)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--compile", action="store_true", help="also time the model under torch.compile")
    parser.add_argument("--out", default=None, help="result JSON (default benchmarks/results/...)")
    args = parser.parse_args()
    device = torch.device(args.device)
    s = FULL
    data = synthetic_chains(s, args.chains)
    loader = DataLoader(data, batch_size=args.batch, shuffle=True, collate_fn=collate_frames, drop_last=True)
    start = time.perf_counter()
    batches = [b for _, b in zip(range(4), loader)]
    data_s = (time.perf_counter() - start) / len(batches)
    batches = [{k: v.to(device) for k, v in b.items()} for b in batches]
    padded = [
        collate_frames([data[i] for i in range(j * args.batch, (j + 1) * args.batch)], pad_to=s.max_length)
        for j in range(4)
    ]
    padded = [{k: v.to(device) for k, v in b.items()} for b in padded]
    torch.manual_seed(0)
    model = FrameDenoiser(backbone_model_config(s)).to(device)
    process = make_process(s.process, **backbone_process_config(s))
    objective = BackboneObjective(process, backbone_objective_config(s))
    graphed = BackboneObjective(process, dataclasses.replace(backbone_objective_config(s), cuda_graphs=True))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")

    def step_with(net, objective=objective):
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
    result["eager_padded_s_per_step"] = time_steps(step_with(model), padded, device, 3, args.steps)
    if device.type == "cuda":
        result |= compare_graphed(model, objective, graphed, padded[0], device)
        result["graphed_s_per_step"] = time_steps(step_with(model, graphed), padded, device, 3, args.steps)
        print(json.dumps(result, indent=2), flush=True)
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
    write_result(
        result, script="protein_step_profile", device=device, packages=("diff-protein",), path=args.out
    )
    if args.compile:
        compiled = torch.compile(model, dynamic=True)
        start = time.perf_counter()
        step_with(compiled)(batches[0])
        _sync(device)
        result["compile_first_step_s"] = time.perf_counter() - start
        result["compiled_s_per_step"] = time_steps(step_with(compiled), batches, device, 6, args.steps)
    print(json.dumps(result, indent=2))
    write_result(
        result, script="protein_step_profile", device=device, packages=("diff-protein",), path=args.out
    )


if __name__ == "__main__":
    main()
