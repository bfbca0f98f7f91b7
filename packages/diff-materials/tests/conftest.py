"""Shared fixtures of diff-materials' tests: a few prototype crystals and a tiny trained pipeline."""

from __future__ import annotations

import pytest
from diffcore.training import TrainConfig


@pytest.fixture(scope="session")
def perovskites():
    from diff_materials.data import generate_crystals

    return generate_crystals()


def tiny_train_config(out, **kw):
    from diff_materials.config import CrystalModelConfig, CrystalTrainConfig

    train = TrainConfig(steps=kw.pop("steps", 20), lr=1e-3, output_dir=str(out), ema_decay=None, progress_bar=False,
                        tensorboard=False, device="cpu", checkpoint_every=None, log_every=10)  # fmt: skip
    defaults = dict(
        model=CrystalModelConfig(width=16, depth=1, num_freqs=4), batch_size=16, limit=40, train=train
    )
    return CrystalTrainConfig(**(defaults | kw))


@pytest.fixture(scope="session")
def tiny_config():
    """``tiny_config(out, **settings)``: a CrystalTrainConfig small enough for a unit test."""
    return tiny_train_config


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory):
    """A ``gen`` pipeline conditioned on ``volume_per_atom`` with a guidance predictor, trained a few steps."""
    from diff_materials.pipeline import train

    out = tmp_path_factory.mktemp("run")
    config = tiny_train_config(out, task="gen", properties=["volume_per_atom"], predictor_steps=5)
    return train(config), out
