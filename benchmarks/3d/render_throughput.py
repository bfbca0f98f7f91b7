"""Rendering throughput of the two backends of ``diff_3d.render``: the pure-PyTorch EWA splatting renderer and
gsplat (CUDA only), forward and forward + backward, at a few Gaussian counts and image sizes.

Scene: Gaussians on the surface of a sphere-on-cube composite (``surface_gaussians``, SH degree 0) seen by an
orbit camera at distance 2.6, so they fill about a third of the image as the procedural objects do. Times are
medians over ``--repeats`` after ``--warmup`` runs, with the device synchronised around each.

    uv run python benchmarks/3d/render_throughput.py            # CUDA: torch and gsplat, up to 65k Gaussians, 256 px
    uv run python benchmarks/3d/render_throughput.py --quick    # CPU-sized: torch only, up to 4k Gaussians, 64 px

Writes benchmarks/results/render_throughput[-quick]-<device>.json. gsplat compiles its CUDA kernels on first
use (minutes, once); the warm-up runs absorb it, and it is not counted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from diff_3d.cameras import orbit_cameras
from diff_3d.data.primitives import Composite, Primitive, surface_gaussians
from diff_3d.render import render

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from results_io import write_result


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_render(
    backend: str, n: int, size: int, backward: bool, args: argparse.Namespace, device: torch.device
) -> float:
    """Median milliseconds of one render (plus its backward when asked)."""
    shape = Composite.on(Primitive("sphere", "red"), Primitive("cube", "blue"))
    gs = surface_gaussians(shape, n, torch.Generator().manual_seed(0)).to(device)
    cam = orbit_cameras(1, width=size, height=size)[0].to(device)
    times = []
    for k in range(args.warmup + args.repeats):
        g = gs.clone().requires_grad_(backward)
        _sync(device)
        start = time.perf_counter()
        with torch.set_grad_enabled(backward):
            out = render(g, cam, backend=backend).rgb
            if backward:
                out.sum().backward()
        _sync(device)
        if k >= args.warmup:
            times.append(1e3 * (time.perf_counter() - start))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="CPU-sized settings (torch backend only).")
    parser.add_argument("--counts", type=int, nargs="+", default=None, help="Gaussian counts.")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="Image sides in pixels.")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.quick else "cpu")
    counts = args.counts or ([1024, 4096] if args.quick else [4096, 16384, 65536])
    sizes = args.sizes or ([32, 64] if args.quick else [64, 128, 256])
    backends = ["torch"]
    if device.type == "cuda":
        from diff_3d.render.gsplat_backend import gsplat_available

        if gsplat_available():
            backends.append("gsplat")
    rows = []
    print(f"device {device}, threads {torch.get_num_threads()}")
    print(f"{'backend':8} {'gaussians':>9} {'size':>5} {'fwd ms':>9} {'fwd+bwd ms':>11} {'fwd img/s':>10}")
    for backend in backends:
        for n in counts:
            for size in sizes:
                fwd = time_render(backend, n, size, False, args, device)
                both = time_render(backend, n, size, True, args, device)
                rows.append({"backend": backend, "gaussians": n, "size": size, "forward_ms": fwd,
                             "forward_backward_ms": both, "forward_images_per_s": 1e3 / fwd})  # fmt: skip
                print(f"{backend:8} {n:9d} {size:5d} {fwd:9.2f} {both:11.2f} {1e3 / fwd:10.1f}", flush=True)
    settings = {**vars(args), "counts": counts, "sizes": sizes, "threads": torch.get_num_threads()}
    path = write_result({"settings": settings, "backends": backends, "rows": rows}, script="render_throughput",
                        variant="quick" if args.quick else None, device=device, packages=("diff-3d", "gsplat"))  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
