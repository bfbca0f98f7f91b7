"""The parts of sharded training that run without a process group: block discovery, the FSDP plugin,
the sharded EMA's update rule, the sharded checkpoint's manifest, and the configuration's refusals.

The two-process runs are in ``test_train_fsdp.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffcore.nn.dit import DiT, DiTConfig
from diffcore.nn.mmdit import MMDiT
from diffcore.nn.unet import UNet, UNetConfig
from diffcore.pretrained import PretrainedModel
from diffcore.training import TrainConfig
from diffcore.training import checkpoint as ckpt
from diffcore.training.ema import EMA
from diffcore.training.sharding import ShardedEMA, block_class_names, complete_plugin, fsdp_plugin
from torch import nn

TINY_DIT = {"input_size": (4, 4), "patch_size": 2, "in_channels": 2, "hidden_size": 16, "depth": 2}


def test_block_classes_of_each_backbone_include_subclasses() -> None:
    assert block_class_names(DiT(DiTConfig(**TINY_DIT, num_heads=2, fused_kernels=False))) == ["DiTBlock"]
    # The fused DiT's blocks subclass DiTBlock: accelerate needs their exact class name.
    assert block_class_names(DiT(DiTConfig(**TINY_DIT, num_heads=2, fused_kernels=True))) == ["FusedDiTBlock"]
    assert MMDiT._no_split_modules == ["MMDiTBlock"]
    assert UNet._no_split_modules == ["ResBlock", "SpatialTransformer"]
    unet = UNet(
        UNetConfig(in_channels=2, model_channels=16, channel_mult=(1, 2), attention_levels=(1,), num_groups=8)
    )
    assert sorted(block_class_names(unet)) == ["ResBlock", "SpatialTransformer"]


def test_block_classes_refuse_a_model_without_blocks_or_a_missing_class() -> None:
    with pytest.raises(ValueError, match="fsdp_blocks: Sequential declares no _no_split_modules"):
        block_class_names(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(ValueError, match=r"fsdp_blocks: no module of class \['Conv2d'\]"):
        block_class_names(nn.Sequential(nn.Linear(2, 2)), ("Linear", "Conv2d"))


def test_plugin_is_fsdp2_per_block_with_float32_reduction_under_bf16() -> None:
    model = DiT(DiTConfig(**TINY_DIT, num_heads=2, fused_kernels=False))
    plugin = fsdp_plugin(
        model, mixed_precision="bf16", activation_checkpointing=True, reshard_after_forward=False
    )
    assert plugin.fsdp_version == 2 and plugin.transformer_cls_names_to_wrap == ["DiTBlock"]
    policy = plugin.mixed_precision_policy
    assert policy.param_dtype == torch.bfloat16 and policy.reduce_dtype == torch.float32
    assert plugin.activation_checkpointing and plugin.reshard_after_forward is False
    assert fsdp_plugin(model).mixed_precision_policy is None
    # A plugin from `accelerate launch --config_file` that names no classes gets the model's, subclasses found.
    fused = DiT(DiTConfig(**TINY_DIT, num_heads=2, fused_kernels=True))
    bare = fsdp_plugin(fused)
    bare.transformer_cls_names_to_wrap = None
    complete_plugin(bare, fused)
    assert bare.transformer_cls_names_to_wrap == ["FusedDiTBlock"]


def test_sharded_ema_on_plain_tensors_equals_ema_bit_for_bit() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    reference = EMA(model, 0.9, warmup_steps=1, warmup=True)
    sharded = ShardedEMA(model, 0.9, warmup_steps=1, warmup=True)
    assert sharded.state_dict().keys() == reference.state_dict().keys()
    for _ in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model(torch.randn(8, 3))  # moves the BatchNorm statistics (buffers are averaged too)
        reference.update(model)
        sharded.update(model)
    mine, theirs = sharded.state_dict(), reference.state_dict()
    for key in theirs:
        assert torch.equal(mine[key], theirs[key]), key
    assert sharded.num_updates == reference.num_updates == 5
    assert sharded.undertrained_warning() == reference.undertrained_warning()
    restored = ShardedEMA(model, 0.9, warmup_steps=1)
    restored.load_state_dict(reference.state_dict())
    assert restored.num_updates == 5 and torch.equal(restored.tensors[0], sharded.tensors[0])
    with pytest.raises(RuntimeError, match="ema_model: under sharding='fsdp2'"):
        _ = sharded.module


def test_sharded_checkpoint_manifest_covers_the_shards(tmp_path: Path) -> None:
    staging = tmp_path / ".staging-checkpoint-00000002"
    (staging / ckpt.SHARDED_DIR).mkdir(parents=True)
    (staging / ckpt.SHARDED_DIR / ".metadata").write_bytes(b"meta")
    (staging / ckpt.SHARDED_DIR / "__0_0.distcp").write_bytes(b"shard of process 0")
    ckpt.write_trainer_state(staging, {"step": 2})
    final = ckpt.publish(staging, tmp_path / ckpt.checkpoint_name(2), keep_last=2)
    assert ckpt.is_sharded(final) and ckpt.verify(final)["step"] == 2
    (final / ckpt.SHARDED_DIR / "__0_0.distcp").write_bytes(b"shard of process 1")
    with pytest.raises(ckpt.CheckpointError, match=r"__0_0\.distcp is corrupt"):
        ckpt.verify(final)
    (final / ckpt.SHARDED_DIR / ".metadata").unlink()
    with pytest.raises(ckpt.CheckpointError, match=r"\.metadata is missing"):
        ckpt.verify(final)


def test_config_refuses_unknown_sharding_and_bad_block_lists() -> None:
    with pytest.raises(ValueError, match="sharding: expected one of"):
        TrainConfig(sharding="zero3")
    with pytest.raises(ValueError, match="fsdp_blocks: expected None or a non-empty list"):
        TrainConfig(fsdp_blocks=[])
    with pytest.raises(ValueError, match="activation_checkpointing: expected True or False"):
        TrainConfig(activation_checkpointing="yes")
    assert TrainConfig(fsdp_blocks=["DiTBlock"]).fsdp_blocks == ("DiTBlock",)


def test_save_pretrained_writes_given_weights_under_the_models_own_class(tmp_path: Path) -> None:
    model = DiT(DiTConfig(**TINY_DIT, num_heads=2, fused_kernels=False))
    state = {k: torch.full_like(v, 0.5) for k, v in model.state_dict().items()}
    model.save_pretrained(tmp_path, state_dict=state)
    loaded = PretrainedModel.from_pretrained(tmp_path)
    assert type(loaded) is DiT
    assert all(torch.equal(v, state[k]) for k, v in loaded.state_dict().items())


def test_fsdp_on_cpu_leaves_a_one_process_accelerator_alone() -> None:
    from accelerate import Accelerator
    from diffcore.training._compat import fsdp_on_cpu, reset_accelerate_state

    reset_accelerate_state(distributed=True)
    try:
        accelerator = Accelerator(cpu=True)
        fsdp_on_cpu(accelerator, fsdp_plugin(nn.Sequential(nn.Linear(2, 2)), blocks=("Linear",)), "no")
        assert not accelerator.is_fsdp2  # one process: nothing to shard, a plain run
    finally:
        reset_accelerate_state(distributed=True)
