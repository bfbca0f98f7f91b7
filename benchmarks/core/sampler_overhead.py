"""Sampler overhead: time per sampling step spent outside the network, ours vs diffusers' scheduler loops.

The network is an identity-cost elementwise map (``0.5 * x``), so what is timed is the sampler's own
arithmetic, kernel launches and host work. For each of our samplers (``diffcore.sample`` with an
eps-prediction ``Denoiser`` on the discrete DDPM linear schedule) and for diffusers' ``DDIMScheduler``,
``EulerDiscreteScheduler``, ``DPMSolverMultistepScheduler`` and ``UniPCMultistepScheduler`` driven by the
usual ``scale_model_input`` / ``step`` loop, it reports milliseconds per step (total and minus the
network's own time). On CUDA it also checks

- no host-device synchronisation inside our loop: ``torch.cuda.set_sync_debug_mode("error")`` around one
  whole call (diffusers' loops are checked the same way, for comparison);
- CUDA-graph capture: one full ``sample()`` call captured with ``torch.cuda.graph`` and replayed on fresh
  noise; the replay must match an eager run, and its time per step is reported.

    uv run python benchmarks/core/sampler_overhead.py            # GPU: batch 16 x 4 x 64 x 64, 50 steps
    uv run python benchmarks/core/sampler_overhead.py --quick    # tiny CPU smoke run

Writes ``benchmarks/results/sampler_overhead[-quick]-<device>.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import diffcore
import torch
from diffcore.paths.schedules import DiscreteVP, betas_for
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from results_io import write_result

OURS = [
    "ddim",
    "ddpm",
    "euler",
    "euler_ancestral",
    "heun",
    "euler_maruyama",
    "midpoint",
    "rk4",
    "dpmpp_2m",
    "unipc",
]
THEIRS = ["DDIMScheduler", "EulerDiscreteScheduler", "DPMSolverMultistepScheduler", "UniPCMultistepScheduler"]


def network(x: Tensor, t: Tensor, **cond: Any) -> Tensor:
    """Identity-cost eps 'network': one elementwise kernel."""
    return 0.5 * x


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn: Callable[[], Any], device: torch.device, repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def network_seconds(noise: Tensor, device: torch.device, repeats: int) -> float:
    t = torch.full((noise.shape[0],), 0.5, device=device)

    def many() -> None:
        for _ in range(20):
            network(noise, t)

    return median_seconds(many, device, repeats) / 20


def sync_free(fn: Callable[[], Any], device: torch.device) -> bool | None:
    """True when ``fn`` runs with no host-device synchronisation (None on CPU: not applicable)."""
    if device.type != "cuda":
        return None
    synchronize(device)
    torch.cuda.set_sync_debug_mode("error")
    try:
        fn()
        return True
    except RuntimeError:
        return False
    finally:
        torch.cuda.set_sync_debug_mode("default")


def graph_replay(
    run: Callable[[Tensor], Tensor], noise: Tensor, device: torch.device, repeats: int
) -> dict[str, Any]:
    """Capture ``run(static_noise)`` as one CUDA graph, replay it on fresh noise, compare with eager."""
    if device.type != "cuda":
        return {"capturable": None}
    static = noise.clone()
    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            run(static)  # warm-up on a side stream, as torch.cuda.graph's documentation asks
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = run(static)
    except Exception as exc:  # a capture failure is a result to report, not a crash
        return {"capturable": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    fresh = torch.randn(
        noise.shape, device=device, dtype=noise.dtype, generator=torch.Generator(device).manual_seed(9)
    )
    static.copy_(fresh)
    graph.replay()
    synchronize(device)
    eager = run(fresh)
    diff = float((static_out - eager).abs().max())
    seconds = median_seconds(graph.replay, device, repeats)
    return {"capturable": True, "max_abs_diff_vs_eager": diff, "replay_seconds": seconds}


def ours(name: str, steps: int, check_finite: str = "off") -> tuple[Callable[[Tensor], Tensor], int]:
    """``run(noise)`` for our sampler ``name`` and its network calls per step. The sampling loop is timed
    without ``sample()``'s end-of-call NaN check (``check_finite="off"``), which reads the samples back once
    per call (one synchronisation); the ``+end-check`` row measures it."""
    denoiser = diffcore.Denoiser(network, DiscreteVP(betas_for("linear")), prediction="eps")
    spec = diffcore.sampling.get(name)

    def run(noise: Tensor) -> Tensor:
        return diffcore.sample(denoiser, noise, sampler=name, steps=steps, check_finite=check_finite)

    return run, spec.nfe_per_step


def theirs(name: str, steps: int, device: torch.device) -> tuple[Callable[[Tensor], Tensor], int]:
    """``run(noise)`` for diffusers' scheduler ``name`` in the standard pipeline loop."""
    import diffusers

    scheduler = getattr(diffusers, name)(num_train_timesteps=1000, beta_schedule="linear")

    def run(noise: Tensor) -> Tensor:
        scheduler.set_timesteps(steps, device=device)
        x = noise * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            eps = network(scheduler.scale_model_input(x, t), t)
            x = scheduler.step(eps, t, x).prev_sample
        return x

    return run, 1


def measure(
    label: str, run: Callable[[Tensor], Tensor], nfe: int, noise: Tensor, steps: int, net_s: float, args
) -> dict[str, Any]:
    device = noise.device
    total = median_seconds(lambda: run(noise), device, args.repeats)
    row: dict[str, Any] = {
        "sampler": label,
        "ms_per_step": 1e3 * total / steps,
        "overhead_ms_per_step": 1e3 * (total / steps - nfe * net_s),
        "nfe_per_step": nfe,
        "sync_free": sync_free(lambda: run(noise), device),
    }
    if label.startswith("ours:") and not label.endswith("end-check"):
        graph = graph_replay(run, noise, device, args.repeats)
        if graph.get("replay_seconds") is not None:
            graph["replay_ms_per_step"] = 1e3 * graph.pop("replay_seconds") / steps
        row["cuda_graph"] = graph
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny CPU run: batch 2 x 4 x 16 x 16, 10 steps")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.quick:
        args.device, args.batch, args.size, args.steps, args.repeats = "cpu", 2, 16, 10, 7
    device = torch.device(args.device)
    noise = torch.randn((args.batch, 4, args.size, args.size), generator=torch.Generator().manual_seed(0)).to(
        device
    )
    net_s = network_seconds(noise, device, args.repeats)

    rows = []
    available = set(diffcore.sampling.available())
    for name in OURS:
        if name not in available:
            print(f"skipping ours:{name} (not registered)")
            continue
        run, nfe = ours(name, args.steps)
        rows.append(measure(f"ours:{name}", run, nfe, noise, args.steps, net_s, args))
    run, nfe = ours("euler", args.steps, check_finite="end")  # the default: one NaN check after the loop
    rows.append(measure("ours:euler+end-check", run, nfe, noise, args.steps, net_s, args))
    try:
        import diffusers  # noqa: F401

        for name in THEIRS:
            run, nfe = theirs(name, args.steps, device)
            rows.append(measure(f"diffusers:{name}", run, nfe, noise, args.steps, net_s, args))
    except ImportError:
        print("diffusers is not installed: its schedulers are skipped")

    print(f"\nnetwork (0.5 * x) on {tuple(noise.shape)}: {1e3 * net_s:.4f} ms per call; device {device}")
    header = f"{'sampler':42s} {'ms/step':>9s} {'overhead':>9s} {'sync-free':>10s} {'graph':>7s} {'graph ms/step':>14s}"
    print(header + "\n" + "-" * len(header))
    for r in rows:
        g = r.get("cuda_graph", {})
        graph_ok = {True: "yes", False: "NO", None: "n/a"}[g.get("capturable")] if g else "-"
        replay = f"{g['replay_ms_per_step']:.4f}" if "replay_ms_per_step" in g else "-"
        sync = {True: "yes", False: "NO", None: "n/a"}[r["sync_free"]]
        print(
            f"{r['sampler']:42s} {r['ms_per_step']:9.4f} {r['overhead_ms_per_step']:9.4f} {sync:>10s} "
            f"{graph_ok:>7s} {replay:>14s}"
        )

    payload = {
        "config": {
            "shape": list(noise.shape),
            "steps": args.steps,
            "repeats": args.repeats,
            "network_ms_per_call": 1e3 * net_s,
        },
        "rows": rows,
    }
    variant = "quick" if args.quick else None
    out = write_result(
        payload, script="sampler_overhead", variant=variant, device=device, packages=("diffusers",)
    )
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
