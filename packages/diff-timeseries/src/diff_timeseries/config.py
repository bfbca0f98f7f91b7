"""Configurations of diff-timeseries: dataclasses, read from YAML / TOML files and ``--set key=value`` overrides
through :mod:`diffcore.config`. Training settings are the core's :class:`~diffcore.training.TrainConfig`,
nested as ``train`` (``--set train.lr=1e-4``), never restated here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from diffcore.device import Device
from diffcore.training import TrainConfig

__all__ = ["SeriesEvaluateConfig", "SeriesModelConfig", "SeriesSampleConfig", "SeriesTrainConfig"]


@dataclass
class SeriesModelConfig:
    """The denoising network (not implemented yet: issue #29).

    Attributes:
        width: hidden size of the backbone.
        depth: number of blocks.
    """

    width: int = 128
    depth: int = 4


@dataclass
class SeriesTrainConfig:
    """One training run.

    Attributes:
        model: the network.
        data_path: a local folder of real data; empty uses the default generated seasonal series with captions.
        batch_size: examples per optimizer step (per process).
        train: the optimisation, checkpoints, device and seed (:class:`diffcore.training.TrainConfig`).
    """

    model: SeriesModelConfig = field(default_factory=SeriesModelConfig)
    data_path: str = ""
    batch_size: int = 32
    train: TrainConfig = field(default_factory=lambda: TrainConfig(output_dir="runs/timeseries"))


@dataclass
class SeriesSampleConfig:
    """Drawing samples from a saved pipeline.

    Attributes:
        num_samples: how many to draw.
        sampler: a ``diffcore.sampling.available()`` name.
        steps: sampler steps.
        seed: seeds the noise.
        device: where to run.
    """

    num_samples: int = 16
    sampler: str = "dpmpp_2m"
    steps: int = 20
    seed: int = 0
    device: Device = "auto"


@dataclass
class SeriesEvaluateConfig:
    """Scoring a saved pipeline against held-out data.

    Attributes:
        num_samples: samples drawn for the metrics.
        seed: seeds the noise.
        device: where to run.
    """

    num_samples: int = 256
    seed: int = 0
    device: Device = "auto"
