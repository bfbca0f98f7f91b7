"""DiT sampling throughput: 50-step DPM-Solver++(2M) with classifier-free guidance, batch 64.

Ours: diffcore's DiT inside ``diffcore.Denoiser`` (DDPM linear betas placed on t in [0, 1], eps
prediction) sampled by ``diffcore.sample(..., sampler="dpmpp_2m", guidance=scale)``, which runs the
conditional and null-class branches in one batched forward. Theirs: diffusers'
DiTTransformer2DModel of the same configuration with ``DPMSolverMultistepScheduler`` in the
DiTPipeline-style loop (batched [cond; uncond] forward, guidance on the eps channels). Both use
random weights (speed does not depend on them), bf16 weights and SDPA; ``--compile`` compiles both
networks. Reported: seconds per batch, images/s, network evaluations (NFE) and peak memory; JSON in
``benchmarks/results/dit_sampling_throughput-<model>-<eager|compile>[-quant]-<device>.json`` (``-quick-cpu``).

``--quantize fp8,int8,...`` adds one diffcore row per torchao mode (``diffcore.precision.quantize``: ``fp8``
float8 weights and activations, ``fp8-weight``, ``int8`` int8 weights and activations, ``int8-weight``), the
network quantised before ``torch.compile``, embeddings, adaLN modulation and the output layer kept in bf16
(``KEEP_IN_BF16``, as in float8 training); ``float8-tensorwise`` / ``float8-rowwise`` run the float8
*training* layers of :mod:`diffcore.precision.float8` for inference instead (inputs and weights cast to float8
each call, the same layers kept), the path float8 training compiles, in case torchao's quantised tensors do
not compile on the running torch (``stream_quant_compile-h100.txt``: with torch 2.11 and torchao 0.16 a
quantised U-Net did not finish its first compiled call in 70 s). Rows run in the order diffcore (bf16),
diffusers, then the quantised ones, and the result file is rewritten after each, so a run cut short by
``timeout`` keeps what it finished. Their difference from the bf16 diffcore row is reported, from the
same weights and noise: ``output_rel_l2`` (one guided network call at t = 0.1, 0.5, 0.9, relative L2 of the
eps output), ``sample_rel_l2`` (the final samples), each checked against ``TOLERANCE`` (``within_tolerance``).
For these rows the adaLN-Zero layers (zero at initialisation, which makes a fresh DiT's output exactly 0)
are drawn at random (:func:`nonzero_dit`) in every diffcore model of the run, so the outputs compared are not zero; speed does
not depend on the values.

    python benchmarks/core/dit_sampling_throughput.py --model XL/2 --batch 64 --steps 50 [--compile]
    python benchmarks/core/dit_sampling_throughput.py --model XL/2 --batch 64 --steps 50 --compile \
        --quantize fp8,int8,int8-weight                  # dit_sampling_throughput-xl2-compile-quant-h100.json
    python benchmarks/core/dit_sampling_throughput.py --quick [--quantize int8-weight,fp8-weight]  # CPU
"""

from __future__ import annotations

import argparse
import copy
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
from diffcore.nn.dit import DiT, DiTConfig, dit_config
from diffcore.precision.float8 import KEEP_IN_BF16, convert_to_float8
from diffcore.precision.quantize import QUANTIZATIONS, quantize_weights
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from diffusers_reference import diffusers_dit
from results_io import write_result

BETA_START, BETA_END, TRAIN_STEPS = 1e-4, 0.02, 1000  # DiT's DDPM linear schedule
# Relative L2 distance from the bf16 network allowed per mode: one network call / the final samples of the
# guided 50-step run. Rounding a weight moves it by half a step: int8 per channel max|w_row| / 255, e4m3 one
# part in 16 of the value; dynamic activations (int8 per token, fp8 per tensor) add as much on each input.
# Through 28 blocks these add up to a few per cent: on the CPU in float32, DiT-XL/2 with nonzero_dit's weights
# measured 0.7% (int8-weight), 1.4% (int8) and 4.0% (fp8-weight) at the probes; the bounds leave 2-4x, and
# the samples, through 50 steps of an ODE with CFG 4, may move about twice as much.
TOLERANCE = {
    "int8-weight": (0.03, 0.06),
    "int8": (0.06, 0.12),
    "fp8-weight": (0.08, 0.16),
    "fp8": (0.10, 0.20),
    "float8-tensorwise": (0.10, 0.20),
    "float8-rowwise": (0.10, 0.20),
}


def config(quick: bool, name: str) -> DiTConfig:
    if quick:
        return dit_config(
            "S", 2, depth=2, hidden_size=64, num_heads=4, input_size=(8, 8), num_classes=10, learn_sigma=True
        )
    size, _, patch = name.partition("/")
    return dit_config(size, int(patch), input_size=(32, 32), in_channels=4, learn_sigma=True)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def nonzero_dit(cfg: DiTConfig, seed: int = 0) -> DiT:
    """Our DiT with its adaLN-Zero layers (modulations, output projection) Xavier-uniform like the other linears
    instead of zero, and the modulations' biases N(0, 0.5^2), so that shifts, scales and gates are of order one
    and every block contributes to the output, as in a trained model."""
    torch.manual_seed(seed)
    model = DiT(cfg)
    g = torch.Generator().manual_seed(seed)
    zeroed = [b.modulation for b in model.blocks] + [model.final_layer.modulation, model.final_layer.linear]
    for layer in zeroed:
        nn.init.xavier_uniform_(layer.weight, generator=g)
        if layer is not model.final_layer.linear:
            layer.bias.data = torch.randn(layer.bias.shape, generator=g) * 0.5
    return model


def ours_sampler(
    cfg: DiTConfig,
    device: torch.device,
    dtype: torch.dtype,
    compile: bool,
    guidance: float,
    model: DiT | None = None,
    quantize: str = "none",
):
    """A function ``(noise, labels, steps) -> samples`` built on ``diffcore.sample``; ``model`` (a fresh DiT
    when None) quantised by ``quantize`` before it is compiled."""
    import diffcore

    if not hasattr(diffcore, "sample") or not hasattr(diffcore, "Denoiser"):
        raise SystemExit(
            "diffcore.sample / diffcore.Denoiser are missing: the sampler module is not installed in this "
            "checkout yet, so our side of this benchmark cannot run."
        )
    from diffcore.paths.schedules import DiscreteVP

    model = (model if model is not None else DiT(cfg)).to(device=device, dtype=dtype).eval()
    if quantize.startswith(
        "float8-"
    ):  # float8 training layers: dynamic float8 of inputs and weights per call
        convert_to_float8(model, quantize.removeprefix("float8-"), check_device=False)
    else:
        quantize_weights(model, quantize, keep=KEEP_IN_BF16)  # type: ignore[arg-type]
    net = torch.compile(model) if compile else model
    channels = cfg.in_channels

    def eps_net(x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        return net(x, t, **cond)[:, :channels]  # learned-sigma channels are not used by the ODE sampler

    betas = torch.linspace(BETA_START, BETA_END, TRAIN_STEPS, dtype=torch.float64)
    denoiser = diffcore.Denoiser(eps_net, schedule=DiscreteVP(betas), prediction="eps")

    def sample(noise: Tensor, labels: Tensor, steps: int) -> Tensor:
        null = torch.full_like(labels, model.null_class)
        return diffcore.sample(
            denoiser,
            noise,
            sampler="dpmpp_2m",
            steps=steps,
            cond={"y": labels},
            guidance=guidance,
            uncond={"y": null},
        )

    def probe(noise: Tensor, labels: Tensor) -> Tensor:
        """The network's eps at each of :data:`PROBES` on ``noise``: ``(len(PROBES), B, C, H, W)``."""
        with torch.inference_mode():
            return torch.stack([eps_net(noise, torch.full((len(noise),), t, device=device), y=labels)
                                for t in PROBES])  # fmt: skip

    sample.probe = probe  # type: ignore[attr-defined]
    return sample


def diffusers_sampler(
    cfg: DiTConfig, device: torch.device, dtype: torch.dtype, compile: bool, guidance: float
):
    """The same loop with diffusers' DiT transformer and DPMSolverMultistepScheduler."""
    from diffusers import DPMSolverMultistepScheduler

    model: nn.Module = diffusers_dit(cfg).to(device=device, dtype=dtype).eval()
    net = torch.compile(model) if compile else model
    scheduler = DPMSolverMultistepScheduler(
        num_train_timesteps=TRAIN_STEPS,
        beta_start=BETA_START,
        beta_end=BETA_END,
        beta_schedule="linear",
        solver_order=2,
        algorithm_type="dpmsolver++",
    )
    channels = cfg.in_channels

    def sample(noise: Tensor, labels: Tensor, steps: int) -> Tensor:
        scheduler.set_timesteps(steps, device=device)
        x = noise * scheduler.init_noise_sigma
        class_in = torch.cat([labels, torch.full_like(labels, cfg.num_classes)])
        for t in scheduler.timesteps:
            out = net(torch.cat([x, x]), timestep=t.expand(2 * x.shape[0]), class_labels=class_in).sample
            eps_c, eps_u = out[:, :channels].chunk(2)
            x = scheduler.step(eps_u + guidance * (eps_c - eps_u), t, x).prev_sample
        return x

    return sample


PROBES = (0.1, 0.5, 0.9)


def time_sampler(sample, cfg: DiTConfig, args: argparse.Namespace, device: torch.device, dtype: torch.dtype):
    gen = torch.Generator(device).manual_seed(0)
    noise = torch.randn(
        args.batch, cfg.in_channels, *cfg.input_size, device=device, generator=gen, dtype=dtype
    )
    labels = torch.randint(0, cfg.num_classes, (args.batch,), device=device, generator=gen)
    with torch.inference_mode():
        start = time.perf_counter()
        sample(noise, labels, args.steps)  # warm-up (and compilation)
        synchronize(device)
        warmup_s = time.perf_counter() - start
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            out = sample(noise, labels, args.steps)
            synchronize(device)
            times.append(time.perf_counter() - start)
    if not torch.isfinite(out).all():
        raise RuntimeError("sampling produced non-finite values")
    best = min(times)
    probe = getattr(sample, "probe", None)
    outputs = probe(noise, labels).float().cpu() if probe is not None else None
    return (
        out.float().cpu(),
        outputs,
        {
            "seconds_per_batch": best,
            "images_per_s": args.batch / best,
            "ms_per_step": 1000 * best / args.steps,
            "warmup_s": warmup_s,
            "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30
            if device.type == "cuda"
            else float("nan"),
        },
    )


def relative_l2(a: Tensor, b: Tensor) -> float:
    """``|a - b| / |b|`` over the whole tensors."""
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


FLOAT8_LINEAR = ("float8-tensorwise", "float8-rowwise")  # torchao float8 training layers, run for inference
MODES = (*QUANTIZATIONS[1:], *FLOAT8_LINEAR)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="XL/2")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--guidance", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument(
        "--quantize",
        default="",
        help=f"comma-separated modes for extra diffcore rows, of {MODES}",
    )
    parser.add_argument("--no-diffusers", action="store_true", help="skip diffusers' row")
    parser.add_argument("--quick", action="store_true", help="tiny model on CPU, float32, 3 steps")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.quantize.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad:
        parser.error(f"--quantize: expected modes of {MODES}, got {bad}")
    device = torch.device("cpu" if args.quick or not torch.cuda.is_available() else "cuda")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if args.quick:
        args.batch, args.steps, args.repeats = min(args.batch, 2), 3, 1
    cfg = config(args.quick, args.model)
    rows: list[dict[str, Any]] = []
    result = {
        "benchmark": "dit_sampling_throughput",
        "model": "tiny/2" if args.quick else args.model,
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "torch": torch.__version__,
        "dtype": str(dtype),
        "batch": args.batch,
        "steps": args.steps,
        "guidance": args.guidance,
        "compile": args.compile,
        "quantize_keep": sorted(KEEP_IN_BF16) if modes else [],
        "quick": args.quick,
        "rows": rows,
    }
    variant = (
        "quick"
        if args.quick
        else f"{args.model.lower().replace('/', '')}-{'compile' if args.compile else 'eager'}"
    )
    variant += "-quant" if modes else ""

    def save() -> Path:  # after every row: a run cut short by a time limit keeps the rows it finished
        theirs = [r for r in rows if r["impl"] == "diffusers"]
        for r in rows:
            if theirs:
                r["speedup_vs_diffusers"] = r["images_per_s"] / theirs[0]["images_per_s"]
        return write_result(result, script="dit_sampling_throughput", variant=variant, device=device,
                            packages=("diffusers",), path=args.out)  # fmt: skip

    base = nonzero_dit(cfg) if modes else None  # the same weights in every diffcore row
    reference: tuple[Tensor, Tensor] | None = None
    # diffcore in bf16, then diffusers, then the quantised rows (a stalled compile of one of them loses only it)
    plan = [("diffcore", "none"), *([] if args.no_diffusers else [("diffusers", "none")])]
    for impl, mode in plan + [(f"diffcore-{m}", m) for m in modes]:
        torch.manual_seed(0)
        print(f"  {impl} ...", flush=True)
        if impl == "diffusers":
            sample = diffusers_sampler(cfg, device, dtype, args.compile, args.guidance)
            rows.append({"impl": impl, "quantize": mode, "nfe": args.steps,
                         **time_sampler(sample, cfg, args, device, dtype)[2]})  # fmt: skip
            save()
            continue
        model = copy.deepcopy(base) if base is not None else None
        sample = ours_sampler(cfg, device, dtype, args.compile, args.guidance, model, mode)
        samples, outputs, stats = time_sampler(sample, cfg, args, device, dtype)
        row = {"impl": impl, "quantize": mode, "nfe": args.steps, **stats}
        if reference is None:
            reference = (samples, outputs)
        else:
            row["output_rel_l2"] = relative_l2(outputs, reference[1])
            row["sample_rel_l2"] = relative_l2(samples, reference[0])
            out_tol, sample_tol = TOLERANCE[mode]
            row["tolerance"] = {"output_rel_l2": out_tol, "sample_rel_l2": sample_tol}
            row["within_tolerance"] = row["output_rel_l2"] <= out_tol and row["sample_rel_l2"] <= sample_tol
        rows.append(row)
        save()
        del sample, model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print(
        f"{result['model']} on {result['device']}: batch {args.batch}, {args.steps} steps DPM++2M, "
        f"CFG {args.guidance}, {dtype}, compile={args.compile}"
    )
    print(
        f"{'impl':26} {'NFE':>5} {'s/batch':>9} {'img/s':>9} {'ms/step':>9} {'mem(GiB)':>9} {'xdiffusers':>10} "
        f"{'out dL2':>8} {'smp dL2':>8} {'ok':>4}"
    )
    for r in rows:
        print(
            f"{r['impl']:26} {r['nfe']:5d} {r['seconds_per_batch']:9.3f} {r['images_per_s']:9.1f} "
            f"{r['ms_per_step']:9.2f} {r['peak_memory_gib']:9.2f} {r.get('speedup_vs_diffusers', math.nan):10.3f} "
            f"{r.get('output_rel_l2', math.nan):8.4f} {r.get('sample_rel_l2', math.nan):8.4f} "
            f"{r.get('within_tolerance', '')!s:>4}"
        )
    print(f"wrote {save()}")
    return result


if __name__ == "__main__":
    main()
