"""Float8 training through torchao (``TrainConfig.float8``, :mod:`diffcore.precision.float8`), on the CPU.

torch 2.9's CPU ``_scaled_mm`` runs per-tensor float8 matmuls, so the ``tensorwise`` recipe runs for real here:
its forward is checked against float8 e4m3 rounding done by hand, and a whole Trainer run (EMA, checkpoint,
resume, saved models) is made with it by lifting only the Trainer's capability check (the GPU-side rule that
float8 needs compute capability 8.9+). Without that lift, the CPU falls back: one warning line, and a run
identical to the one without float8.
"""

from __future__ import annotations

import copy
import shutil
import warnings

import pytest
import torch
from diffcore.nn.dit import DiT, DiTConfig
from diffcore.precision import float8 as float8_mod
from diffcore.precision.float8 import KEEP_IN_BF16, convert_to_float8, float8_plan, restore_linear
from diffcore.training import TrainConfig, Trainer
from diffcore.training.checkpoint import checkpoint_name
from diffcore.training.objectives import DiffusionObjective
from diffcore.training.performance import enable_activation_checkpointing
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

torchao = pytest.importorskip("torchao")
from torchao.float8.float8_linear import Float8Linear  # noqa: E402

E4M3_MAX = torch.finfo(torch.float8_e4m3fn).max  # 448


def _dit(depth: int = 2, hidden: int = 32, fused: bool = False) -> DiT:
    torch.manual_seed(0)  # test-local: module initialisation
    net = DiT(DiTConfig(input_size=(8, 8), patch_size=2, in_channels=4, hidden_size=hidden, depth=depth,
                        num_heads=2, num_classes=10, fused_kernels=fused))  # fmt: skip
    g = torch.Generator().manual_seed(1)
    for p in net.parameters():  # away from adaLN-Zero's zeros, so every layer matters
        p.data = torch.randn(p.shape, generator=g) * 0.1
    return net


def _fake_e4m3(x: Tensor) -> Tensor:
    """Tensorwise float8 rounding, by hand: scale the tensor's largest magnitude to 448, round to e4m3, undo."""
    scale = E4M3_MAX / x.abs().amax().clamp_min(1e-12)
    return (x * scale).to(torch.float8_e4m3fn).float() / scale


def test_the_plan_converts_the_block_linears_and_keeps_embeddings_modulation_output_and_odd_shapes():
    net = _dit()
    net.odd = nn.Linear(32, 24)  # 24 is not a multiple of 16
    plan = convert_to_float8(net, "tensorwise", check_device=False)
    blocks = [
        f"blocks.{i}.{layer}"
        for i in range(2)
        for layer in ("attn.qkv.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")
    ]
    assert plan.converted == tuple(blocks)
    assert set(plan.kept) == {"t_embedder.mlp.0", "t_embedder.mlp.2", "blocks.0.modulation", "blocks.1.modulation",
                              "final_layer.linear", "final_layer.modulation", "odd"}  # fmt: skip
    assert plan.kept["blocks.0.modulation"] == KEEP_IN_BF16["modulation"]
    assert plan.kept["odd"].startswith("weight 24 x 32")
    modules = dict(net.named_modules())
    assert all(type(modules[n]) is Float8Linear for n in plan.converted)
    assert all(type(modules[n]) is nn.Linear for n in plan.kept)
    # weights in the converted layers: 2 blocks x (96 + 32 + 128 + 128) x 32, of all linear weights
    total = sum(m.weight.numel() for m in net.modules() if isinstance(m, nn.Linear))
    assert plan.float8_fraction == pytest.approx(2 * 384 * 32 / total)


def test_conversion_keeps_the_parameters_and_the_state_dict():
    net = _dit()
    before = dict(net.named_parameters())
    state = {k: v.clone() for k, v in net.state_dict().items()}
    convert_to_float8(net, "rowwise", check_device=False)
    assert dict(net.named_parameters()).keys() == before.keys()
    assert all(
        p is before[n] for n, p in net.named_parameters()
    )  # an optimizer built before still holds them
    after = net.state_dict()
    assert after.keys() == state.keys() and all(torch.equal(after[k], state[k]) for k in state)
    fc1 = net.blocks[0].mlp.fc1
    assert fc1.config.cast_config_input.scaling_granularity.value == "axiswise"  # rowwise scales
    restore_linear(net)
    assert all(type(m) is nn.Linear for m in net.modules() if isinstance(m, nn.Linear))
    assert all(p is before[n] for n, p in net.named_parameters())


def test_tensorwise_forward_equals_float8_rounding_of_input_and_weight_by_hand():
    g = torch.Generator().manual_seed(0)
    layer = nn.Linear(64, 32)
    layer.weight.data = torch.randn(32, 64, generator=g)
    x = torch.randn(5, 64, generator=g) * 3
    wrapper = nn.Sequential(copy.deepcopy(layer))
    convert_to_float8(wrapper, "tensorwise", keep={}, check_device=False)
    expected = _fake_e4m3(x) @ _fake_e4m3(layer.weight.detach()).T + layer.bias.detach()
    torch.testing.assert_close(wrapper(x).detach(), expected, rtol=1e-4, atol=5e-5)
    exact = layer(x).detach()
    distance = ((wrapper(x).detach() - exact).norm() / exact.norm()).item()
    assert 1e-3 < distance < 0.06  # e4m3 keeps 3 mantissa bits: a few per cent per matmul, never zero


def _loader() -> DataLoader:
    g = torch.Generator().manual_seed(2)
    data = TensorDataset(torch.randn(16, 4, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g))
    return DataLoader(data, batch_size=4, shuffle=True)


def _objective(model: nn.Module, batch: tuple[Tensor, Tensor], generator: torch.Generator | None = None):
    x, y = batch
    return DiffusionObjective("rectified-flow", "velocity")(model, {"x": x, "y": y}, generator)


def _train(tmp_path, name: str, **overrides) -> Trainer:
    config = TrainConfig(steps=4, lr=1e-3, mixed_precision="bf16", device="cpu", output_dir=str(tmp_path / name),
                         checkpoint_every=2, log_every=1, ema_decay=0.9, progress_bar=False, tensorboard=False,
                         **overrides)  # fmt: skip
    trainer = Trainer(_dit(), _objective, _loader(), config)
    trainer.fit()
    return trainer


def _weights(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_on_the_cpu_float8_falls_back_with_one_warning_line_and_trains_as_bf16(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fp8 = _train(tmp_path, "fp8", float8="tensorwise")
    ours = [str(w.message) for w in caught if "float8" in str(w.message)]
    assert ours == ["float8='tensorwise' is off for this run: float8 matmuls need a CUDA GPU of compute "
                    "capability 8.9 or newer (Ada, Hopper), not cpu"]  # fmt: skip
    assert fp8.float8_plan is None
    assert not any(isinstance(m, Float8Linear) for m in fp8.unwrapped_model.modules())
    plain = _train(tmp_path, "plain")
    a, b = _weights(fp8.unwrapped_model), _weights(plain.unwrapped_model)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_float8_trains_with_ema_checkpoints_exact_resume_and_plain_saved_models(tmp_path, monkeypatch):
    monkeypatch.setattr(float8_mod, "fp8_unavailable_reason", lambda device: None)  # the capability rule only
    full = _train(tmp_path, "full", float8="tensorwise")
    model = full.unwrapped_model
    assert full.float8_plan is not None and len(full.float8_plan.converted) == 8
    assert type(model.blocks[0].mlp.fc1) is Float8Linear
    assert not any(
        isinstance(m, Float8Linear) for m in full.ema_model.modules()
    )  # the average samples plainly
    saved = DiT.from_pretrained(tmp_path / "full" / "model")
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in saved.state_dict().items())
    plain = _train(tmp_path, "plain")
    drift = max(
        (a - b).abs().max().item() for a, b in zip(model.parameters(), plain.unwrapped_model.parameters())
    )
    assert (
        0 < drift <= 2 * 4 * 1e-3
    )  # float8 changed the run; Adam moves a weight by about lr a step, each run
    # A resume from step 2 ends where the uninterrupted float8 run did, bit for bit (weights and EMA).
    resumed_dir = tmp_path / "resumed"
    name = checkpoint_name(2)
    shutil.copytree(tmp_path / "full" / "checkpoints" / name, resumed_dir / "checkpoints" / name)
    resumed = _train(tmp_path, "resumed", float8="tensorwise", resume="latest")
    assert type(resumed.unwrapped_model.blocks[0].mlp.fc1) is Float8Linear
    for a, b in ((model, resumed.unwrapped_model), (full.ema_model, resumed.ema_model)):
        wa, wb = _weights(a), _weights(b)
        assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_float8_settings_are_checked_in_one_line():
    with pytest.raises(
        ValueError, match=r"float8: expected one of \('none', 'tensorwise', 'rowwise'\), got 'fp8'"
    ):
        TrainConfig(float8="fp8", mixed_precision="bf16")
    with pytest.raises(
        ValueError, match=r"float8: 'rowwise' trains the other layers in bf16; set mixed_precision"
    ):
        TrainConfig(float8="rowwise", mixed_precision="no")
    with pytest.raises(ValueError, match=r"float8: float8 matmuls need a CUDA GPU .* not cpu"):
        convert_to_float8(_dit(), "tensorwise")
    with pytest.raises(ValueError, match=r"float8: DiT has no linear layer to convert"):
        convert_to_float8(_dit(), "tensorwise", keep={"": "everything"}, check_device=False)
    assert float8_plan(_dit(), "rowwise").recipe == "rowwise"


def test_activation_checkpointing_switches_the_blocks_and_leaves_the_gradients_unchanged(tmp_path):
    net, reference = _dit(), _dit()
    assert enable_activation_checkpointing(net) == [""]
    x, t, y = torch.randn(3, 4, 8, 8), torch.rand(3), torch.tensor([0, 4, 9])
    net(x, t, y).square().mean().backward()
    reference(x, t, y).square().mean().backward()
    for (name, p), q in zip(net.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6, msg=name)
    trainer = _train(tmp_path, "ckpt", activation_checkpointing=True)
    assert trainer.unwrapped_model.gradient_checkpointing and not trainer.ema_model.gradient_checkpointing
    with pytest.raises(
        ValueError, match=r"activation_checkpointing: Linear has no module with a gradient_check"
    ):
        enable_activation_checkpointing(nn.Linear(2, 2))


def test_mmdit_and_unet_plans_convert_only_token_layers():
    from diffcore.nn.mmdit import MMDiT, MMDiTConfig
    from diffcore.nn.unet import UNet, UNetConfig

    mmdit = MMDiT(MMDiTConfig(input_size=(8, 8), in_channels=4, hidden_size=64, depth=1, num_heads=2, pooled_dim=32,
                              context_dim=48))  # fmt: skip
    plan = float8_plan(mmdit)
    assert {"context_embedder", "pooled_embedder.0", "blocks.0.x_modulation", "blocks.0.c_modulation",
            "final_layer.linear"} <= set(plan.kept)  # fmt: skip
    assert plan.converted and all(n.startswith("blocks.0.") and "modulation" not in n for n in plan.converted)
    unet = UNet(UNetConfig())
    plan = float8_plan(unet)
    assert all("emb_layers" in n or "time_embed" in n for n in plan.kept)
    assert any(n.endswith("attn1.qkv.qkv") for n in plan.converted)
    assert not any("emb_layers" in n or "time_embed" in n for n in plan.converted)


def fp8_gpu(test):
    """A test of float8 matmuls on a GPU (compute capability 8.9+): marked ``gpu``, skipped elsewhere."""
    has = torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 9)
    return pytest.mark.gpu(pytest.mark.skipif(not has, reason="needs a CUDA GPU of capability 8.9+")(test))


@fp8_gpu
@pytest.mark.parametrize(("recipe", "compile"), [("tensorwise", True), ("rowwise", False)])
def test_float8_training_on_the_gpu_converts_without_warning_and_tracks_bf16(tmp_path, recipe, compile):
    def run(name: str, **overrides) -> Trainer:
        config = TrainConfig(steps=30, lr=1e-3, mixed_precision="bf16", device="cuda", compile=compile,
                             output_dir=str(tmp_path / name), checkpoint_every=None, log_every=10, ema_decay=0.9,
                             progress_bar=False, tensorboard=False, **overrides)  # fmt: skip
        trainer = Trainer(
            _dit(hidden=64, fused=True), _objective, _loader(), config
        )  # the fused kernels step aside
        trainer.fit()
        return trainer

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the fallback's warning would fail the test
        fp8 = run("fp8", float8=recipe)
    bf16 = run("bf16")
    mlp = fp8.unwrapped_model.blocks[0].mlp
    assert fp8.float8_plan is not None and type(mlp.fc1) is Float8Linear
    from diffcore.kernels.mlp import gelu_mlp_runs_on

    tokens = torch.randn(4, 64, device="cuda", dtype=torch.bfloat16)
    assert not gelu_mlp_runs_on(tokens, mlp.fc1, mlp.fc2)  # the cuBLASLt epilogue leaves float8 layers alone
    losses = [t._last_record["loss"] for t in (fp8, bf16)]
    assert abs(losses[0] - losses[1]) <= 0.05 * losses[1]  # same data and noise; float8 moves the loss little


@fp8_gpu
def test_fp8_inference_on_the_gpu_stays_close_to_bf16():
    from diffcore.precision.quantize import quantize_weights

    net = _dit(hidden=64).cuda().to(torch.bfloat16).eval()
    quantized = quantize_weights(copy.deepcopy(net), "fp8", keep=KEEP_IN_BF16)
    g = torch.Generator("cuda").manual_seed(0)
    x = torch.randn(8, 4, 8, 8, device="cuda", generator=g, dtype=torch.bfloat16)
    t, y = torch.rand(8, device="cuda", generator=g), torch.arange(8, device="cuda")
    with torch.inference_mode():
        a, b = net(x, t, y).float(), quantized(x, t, y).float()
    distance = ((b - a).norm() / a.norm()).item()
    assert 1e-4 < distance < 0.1  # float8 weights and activations: a few per cent through two blocks
