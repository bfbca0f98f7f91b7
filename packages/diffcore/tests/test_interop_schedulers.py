"""diffusers ``scheduler_config.json`` -> our schedule, prediction, grid and sampler (diffcore.interop.schedulers).

Each case writes a real ``scheduler_config.json`` with diffusers' ``save_config``, reads it with
:func:`read_scheduler_config`, and samples the same exact Gaussian-mixture model both ways: diffusers' scheduler
loop (the model evaluated at the noise level of each of its steps) against :meth:`SchedulerSpec.sample`.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from diffcore.interop.schedulers import read_scheduler_config, scheduler_from_config
from diffcore.paths.analytic import GaussianMixture
from diffcore.sampling import grids

diffusers = pytest.importorskip("diffusers")

pytestmark = pytest.mark.usefixtures("one_thread")
GM = GaussianMixture.random(4, 3, spread=1.5, seed=3)


def their_output(spec, x: torch.Tensor, t: float) -> torch.Tensor:
    """The exact model's output at our time ``t`` in the prediction the configuration names (diffusers'
    ``flow_prediction`` is ``eps - x0``, our ``velocity``)."""
    return GM.network(spec.schedule, spec.prediction)(x, torch.full((x.shape[0],), t, dtype=torch.float64))


def run_diffusers(scheduler, spec, steps: int, noise: torch.Tensor, seed: int | None) -> torch.Tensor:
    scheduler.set_timesteps(steps)
    T = scheduler.config.num_train_timesteps
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    x = noise * getattr(scheduler, "init_noise_sigma", 1.0)
    for k in scheduler.timesteps:
        if spec.class_name == "EulerDiscreteScheduler":
            x_in = scheduler.scale_model_input(x, k).to(torch.float64)
            sigma = float(scheduler.sigmas[scheduler.step_index])
            t = grids.time_at_log_snr(spec.schedule, -2 * math.log(sigma))
        elif spec.class_name.startswith("FlowMatch"):
            x_in, t = x, float(k) / T
        else:
            x_in, t = x, (int(k) + 1) / T
        out = their_output(spec, x_in.to(torch.float64), t)
        x = scheduler.step(out, k, x, **({"generator": gen} if gen is not None else {})).prev_sample
    return x.to(torch.float64)


CASES = {
    "ddim-sd15": ("DDIMScheduler", dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                  clip_sample=False, set_alpha_to_one=False, steps_offset=1), 12, "ddim"),
    "ddim-trailing-v-zsnr": ("DDIMScheduler", dict(beta_schedule="scaled_linear", beta_start=0.00085,
                             beta_end=0.012, clip_sample=False, timestep_spacing="trailing",
                             prediction_type="v_prediction", rescale_betas_zero_snr=True), 10, "ddim"),
    "ddpm-cosine": ("DDPMScheduler", dict(clip_sample=False, beta_schedule="squaredcos_cap_v2"), 20, "ddpm"),
    "euler-linspace": ("EulerDiscreteScheduler", dict(beta_schedule="scaled_linear", beta_start=0.00085,
                       beta_end=0.012), 15, "ddim"),
    "euler-leading-v": ("EulerDiscreteScheduler", dict(timestep_spacing="leading", steps_offset=1,
                        prediction_type="v_prediction"), 10, "ddim"),
    "dpmpp-2m-heun": ("DPMSolverMultistepScheduler", dict(solver_type="heun"), 8, "dpmpp_2m"),
    "dpmpp-3m": ("DPMSolverMultistepScheduler", dict(solver_order=3, beta_schedule="scaled_linear",
                      beta_start=0.00085, beta_end=0.012), 12, "dpmpp_3m"),
    "unipc": ("UniPCMultistepScheduler", dict(solver_order=2), 10, "unipc"),
    "flow-match-sd3": ("FlowMatchEulerDiscreteScheduler", dict(shift=3.0), 12, "euler"),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_sampling_from_a_scheduler_config_matches_diffusers_scheduler(tmp_path, case):
    cls, options, steps, sampler = CASES[case]
    scheduler = getattr(diffusers, cls)(**options)
    scheduler.save_config(tmp_path)
    spec = read_scheduler_config(tmp_path)
    assert spec.sampler == sampler
    noise = torch.randn(64, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    seed = 11 if sampler == "ddpm" else None
    theirs = run_diffusers(scheduler, spec, steps, noise, seed)
    den = GM.denoiser(spec.schedule, spec.prediction)
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    ours = spec.sample(den, noise, steps, generator=gen, progress=False)
    err = float((ours - theirs).norm() / theirs.norm())
    assert err < 1e-4, f"relative difference {err:.2e}"


def test_flow_matching_config_reads_as_rectified_flow_with_the_shifted_grid(tmp_path):
    diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0).save_config(tmp_path)
    spec = read_scheduler_config(tmp_path / "scheduler_config.json")
    assert (spec.schedule.name, spec.prediction, spec.sampler) == ("rectified-flow", "velocity", "euler")
    grid = spec.grid(4)
    # sigma = shift s / (1 + (shift - 1) s) at s = 1, 2/3-ish, ...: the half-way point moves towards noise
    assert grid[0] == 1.0 and grid[-1] == 0.0 and float(grid[2]) > 0.5


def test_unsupported_settings_are_refused_naming_the_setting(tmp_path):
    with pytest.raises(ValueError, match="use_karras_sigmas"):
        scheduler_from_config({"_class_name": "DPMSolverMultistepScheduler", "use_karras_sigmas": True})
    with pytest.raises(ValueError, match="algorithm_type: 'sde-dpmsolver\\+\\+'"):
        scheduler_from_config(
            {"_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "sde-dpmsolver++"}
        )
    with pytest.raises(ValueError, match="clip_sample"):
        scheduler_from_config({"_class_name": "DDIMScheduler"})  # diffusers' default clips x0 to [-1, 1]
    with pytest.raises(ValueError, match="_class_name: 'LMSDiscreteScheduler'"):
        scheduler_from_config({"_class_name": "LMSDiscreteScheduler"})
    (tmp_path / "scheduler_config.json").write_text(json.dumps({"_class_name": "DDIMScheduler", "clip_sample": False,
                                                                "prediction_type": "x1"}))  # fmt: skip
    with pytest.raises(ValueError, match="prediction_type: 'x1'"):
        read_scheduler_config(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"scheduler_config\.json"):
        read_scheduler_config(tmp_path / "nowhere")


@pytest.mark.parametrize("cls, options", [("DDIMScheduler", dict(clip_sample=False, set_alpha_to_one=False, steps_offset=1)),
                                          ("DPMSolverMultistepScheduler", dict(prediction_type="v_prediction"))])  # fmt: skip
def test_a_converted_unet_samples_what_diffusers_samples_with_the_same_scheduler(tmp_path, cls, options):
    """End to end with a real network: diffusers' U-Net in diffusers' scheduler loop against the converted U-Net
    in :meth:`SchedulerSpec.sample`, which hands the network diffusers' timestep."""
    from diffcore.interop.diffusers import load_diffusers_model

    unet = diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(16, 32), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        norm_num_groups=8, cross_attention_dim=12, attention_head_dim=2,
    ).eval()  # fmt: skip
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in unet.parameters():
            p.copy_(
                0.3 * torch.randn(p.shape, generator=g) / max(1, p.shape[-1]) ** 0.5 + (p.ndim == 1) * 0.1
            )
    unet.save_pretrained(tmp_path / "unet")
    scheduler = getattr(diffusers, cls)(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, **options
    )
    scheduler.save_config(tmp_path / "scheduler")
    noise, ctx = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 3, 12, generator=g)
    scheduler.set_timesteps(6)
    x = noise * scheduler.init_noise_sigma
    with torch.no_grad():
        for k in scheduler.timesteps:
            out = unet(scheduler.scale_model_input(x, k), k, encoder_hidden_states=ctx).sample
            x = scheduler.step(out, k, x).prev_sample
        spec = read_scheduler_config(tmp_path / "scheduler")
        ours = spec.sample(
            load_diffusers_model(tmp_path / "unet"), noise, 6, cond={"context": ctx}, progress=False
        )
    err = float((ours - x).norm() / x.norm())
    assert err < 1e-4, f"relative difference {err:.2e}"
