"""The configurations: defaults stated once, the core's TrainConfig nested, bad values named, files read."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
from diff_protein.config import (
    ProteinEvaluateConfig,
    ProteinSampleConfig,
    ProteinTrainConfig,
    default_train_config,
)
from diff_protein.models.configs import FrameDenoiserConfig, SequenceDenoiserConfig, TaxonomyClassifierConfig
from diffcore.config import field_docs, load_config
from diffcore.training import TrainConfig

CONFIGS = (
    ProteinTrainConfig,
    ProteinSampleConfig,
    ProteinEvaluateConfig,
    FrameDenoiserConfig,
    SequenceDenoiserConfig,
    TaxonomyClassifierConfig,
)


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_every_field_is_documented(cls) -> None:
    docs = field_docs(cls)
    missing = [f.name for f in dataclasses.fields(cls) if not docs.get(f.name)]
    assert not missing, f"{cls.__name__}: undocumented {missing}"


def test_training_defaults_are_the_ones_the_library_used() -> None:
    """diff-protein 0.1's ``fit``: peak lr 1e-4, cosine decay to a tenth, no EMA, one checkpoint at the end."""
    train = ProteinTrainConfig().train
    assert isinstance(train, TrainConfig)
    assert (train.lr, train.lr_schedule, train.min_lr_ratio, train.ema_decay) == (1e-4, "cosine", 0.1, None)
    assert (train.checkpoint_every, train.keep_last, train.output_dir) == (None, 1, "runs/protein")
    assert (train.steps, train.seed, train.device) == (1000, 0, "auto")
    assert default_train_config(lr=3e-4, ema_decay=0.999).lr == 3e-4
    cfg = ProteinTrainConfig()
    assert (cfg.batch_size, cfg.process, cfg.rotation_rate, cfg.rotation_rate_t_max) == (
        16,
        "flow",
        20.0,
        0.9,
    )
    assert cfg.backbone == FrameDenoiserConfig() and cfg.with_train(steps=5).train.steps == 5


def test_settings_from_a_file_and_overrides(tmp_path) -> None:
    path = tmp_path / "protein.toml"
    path.write_text(
        '[train]\nwhat = "sequence"\nlength = 32\n[train.sequence]\ndepth = 2\n'
        "[sample]\nnum_samples = 3\nlabels = ['taxon_1']\n"
    )
    overrides = ["train.seed=7", "train.lr=3e-4", "batch_size=4"]
    cfg = load_config(ProteinTrainConfig, path, overrides=overrides, section="train")
    assert (cfg.what, cfg.length, cfg.batch_size, cfg.sequence.depth) == ("sequence", 32, 4, 2)
    assert (cfg.train.lr, cfg.train.seed, cfg.train.ema_decay, cfg.train.lr_schedule) == (
        3e-4,
        7,
        None,
        "cosine",
    )
    sample = load_config(ProteinSampleConfig, path, section="sample")
    assert sample.num_samples == 3 and sample.labels == ("taxon_1",)


def test_a_files_nested_train_table_keeps_the_packages_train_defaults(tmp_path) -> None:
    path = tmp_path / "protein.toml"
    path.write_text(
        "[train]\nsteps = 50\n"
    )  # the command's settings at the top level: [train] is TrainConfig
    cfg = load_config(ProteinTrainConfig, path)
    assert cfg.train.steps == 50 and cfg.train.ema_decay is None


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda: ProteinTrainConfig(what="rna"), "what"),  # type: ignore[arg-type]
        (lambda: ProteinTrainConfig(process="ddpm"), "process"),  # type: ignore[arg-type]
        (lambda: ProteinTrainConfig(batch_size=0), "batch_size"),
        (lambda: ProteinTrainConfig(max_length=10), "max_length"),
        (lambda: ProteinTrainConfig(motif_prob=1.5), "motif_prob"),
        (lambda: ProteinTrainConfig(rotation_rate_t_max=0.0), "rotation_rate_t_max"),
        (lambda: ProteinTrainConfig(classifier_steps=-1), "classifier_steps"),
        (lambda: ProteinSampleConfig(fixed="2-6"), "fixed"),
        (lambda: ProteinSampleConfig(device="gpu"), "device"),  # type: ignore[arg-type]
        (lambda: ProteinSampleConfig(num_samples=0), "num_samples"),
        (lambda: ProteinEvaluateConfig(num_reference=0), "num_reference"),
    ],
)
def test_bad_values_are_named(make, name: str) -> None:
    with pytest.raises(ValueError, match=f"^{name}: "):
        make()


def test_configurations_and_the_command_line_load_no_network_code() -> None:
    code = (
        "import sys, diff_protein.cli\n"
        "heavy = [m for m in ('diff_protein.pipeline', 'diff_protein.models.ipa', 'diff_protein.bench.runner')"
        " if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
