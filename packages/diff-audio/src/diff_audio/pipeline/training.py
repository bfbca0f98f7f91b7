"""Training an :class:`~diff_audio.pipeline.core.AudioPipeline`: the VAE, then the latent DiT, each with
:class:`diffcore.training.Trainer` (checkpoints, exact resume, EMA, gradient clipping, the non-finite-loss stop
that names the step, mixed precision, progress bar).

Run folder (``config.train.output_dir``)::

    train_config.json   the settings as trained (resolved) and notes
    vae_run/            the VAE stage's Trainer run (log.jsonl, checkpoints/, model/, model_ema/)
    checkpoints/ log.jsonl model/ model_ema/     the DiT stage's Trainer run
    pipeline/           the trained AudioPipeline (save_pretrained)

``train.max_seconds`` (when set) is the wall-time budget of each stage (``vae_max_seconds`` overrides it for the
VAE). The clips are rendered (or read) once
into memory; after the VAE stage every clip is encoded once (its
posterior mean) and the DiT trains on the cached latents. A folder of real audio therefore contributes one
crop per file per run (its offset drawn from the run's seed).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from diffcore.device import resolve_device
from diffcore.io import write_json
from diffcore.rng import seeded
from diffcore.training import TrainConfig, Trainer, objectives
from diffcore.training.objectives import DiffusionObjective
from diffcore.training.trainer import RUN_FILES
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from diff_audio.config import AudioTrainConfig
from diff_audio.data.folder import AudioFolder
from diff_audio.data.synth import INSTRUMENT_WORDS, NOTE_NAMES, SynthConfig, SyntheticMusic
from diff_audio.models.dit import AudioDiT, AudioDiTConfig, build_vocabulary
from diff_audio.models.vae import AudioVAE, AudioVAEModelConfig, VAEObjective
from diff_audio.pipeline.core import AudioPipeline

__all__ = ["CONFIG_FILE", "TrainingData", "build_objective", "load_training_data", "train", "train_vae"]

CONFIG_FILE = "train_config.json"
PIPELINE_DIR = "pipeline"
VAE_RUN = "vae_run"


@dataclasses.dataclass
class TrainingData:
    """Clips ``audio`` ``(N, channels, samples)`` with ``captions``, ``seconds_start`` / ``seconds_total``
    ``(N,)``, and what described them (``info``: source, kind, instruments) and ``notes`` for the user."""

    audio: Tensor
    captions: list[str]
    seconds_start: Tensor
    seconds_total: Tensor
    info: dict[str, Any]
    notes: list[str]


class _Batches(Dataset):
    """Items ``{"x": tensors["x"][i], ...}`` of equally long tensors."""

    def __init__(self, **tensors: Tensor) -> None:
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors["x"])

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {k: v[i] for k, v in self.tensors.items()}


def _check_clip(config: AudioTrainConfig) -> int:
    d, hop = config.data, _hop(config) * config.model.patch_size
    samples = d.clip_seconds * d.sample_rate
    if abs(samples - round(samples)) > 1e-6 or round(samples) % hop:
        ok = max(1, round(samples / hop)) * hop / d.sample_rate
        raise ValueError(
            f"data.clip_seconds: {d.clip_seconds} s at {d.sample_rate} Hz must be a whole number of DiT tokens "
            f"({hop} samples = VAE hop x patch_size); try {ok:g}"
        )
    return round(samples)


def _hop(config: AudioTrainConfig) -> int:
    out = 1
    for s in config.vae.strides:
        out *= s
    return out


def load_training_data(config: AudioTrainConfig, progress: bool = True) -> TrainingData:
    """Render the synthetic set (``data.path`` empty) or read one crop of every file of ``data.path``."""
    d = config.data
    _check_clip(config)
    if d.path:
        folder = AudioFolder(d.path, d.sample_rate, d.channels, d.clip_seconds, seed=config.train.seed)
        notes = [f"skipped {p}: {why}" for p, why in folder.skipped]
        items = [folder[i] for i in tqdm(range(len(folder)), desc="reading audio", disable=not progress)]
        info = {"source": "folder", "path": d.path, "classes": folder.classes}
    else:
        synth = SynthConfig(
            kind=d.kind, length=d.length, seed=config.train.seed, sample_rate=d.sample_rate, channels=d.channels,
            clip_seconds=d.clip_seconds, min_seconds=d.min_seconds, instruments=d.instruments,
        )  # fmt: skip
        ds = SyntheticMusic(synth)
        items = [ds[i] for i in tqdm(range(len(ds)), desc="rendering clips", disable=not progress)]
        notes = []
        info = {
            "source": "synthetic",
            "kind": d.kind,
            "instruments": list(d.instruments),
            "min_seconds": d.min_seconds,
        }
    return TrainingData(
        audio=torch.stack([it["audio"] for it in items]),
        captions=[it["caption"] for it in items],
        seconds_start=torch.tensor([float(it["seconds_start"]) for it in items]),
        seconds_total=torch.tensor([float(it["seconds_total"]) for it in items]),
        info=info,
        notes=notes,
    )


def build_objective(name: str, cond_dropout: float) -> DiffusionObjective:
    """``rectified_flow`` (velocity, logit-normal t) or ``v`` (v-prediction on ``vp-cosine``), with caption
    dropout to the all-padding caption for classifier-free guidance."""
    kw: dict[str, Any] = (
        {"cond_dropout": cond_dropout, "null_cond": {"tokens": 0}} if cond_dropout > 0 else {}
    )
    if name == "rectified_flow":
        return objectives.rectified_flow(**kw)
    if name == "v":
        return objectives.v_loss("vp-cosine", **kw)
    raise ValueError(f"objective: expected rectified_flow or v, got {name!r}")


def _stage(train: TrainConfig, **changes: Any) -> TrainConfig:
    steps = changes.get("steps", train.steps)
    return dataclasses.replace(train, warmup_steps=min(train.warmup_steps, steps - 1), **changes)


def _loader(dataset: Dataset, batch_size: int) -> DataLoader:
    return DataLoader(dataset, batch_size=min(batch_size, len(dataset)), shuffle=True, drop_last=True)  # type: ignore[arg-type]


def train_vae(data: TrainingData, config: AudioTrainConfig) -> AudioVAE:
    """The VAE stage: :class:`VAEObjective` for ``config.vae_steps`` steps (run folder ``vae_run/``; resumed with
    the run), then the latent normalisation fitted on up to 1024 clips."""
    v = config.vae
    cfg = AudioVAEModelConfig(
        **vars(v), audio_channels=data.audio.shape[1], sample_rate=config.data.sample_rate
    )
    with seeded(config.train.seed):
        vae = AudioVAE(cfg)
    crop = None
    if config.vae_crop_seconds is not None:  # whole hops, at least one
        crop = max(1, round(config.vae_crop_seconds * config.data.sample_rate / vae.hop)) * vae.hop
    objective = VAEObjective(
        v.l1_weight, v.stft_weight, v.kl_weight, v.fft_sizes, v.complex_stft_weight, crop
    )
    run = Path(config.train.output_dir) / VAE_RUN
    budget = config.vae_max_seconds if config.vae_max_seconds is not None else config.train.max_seconds
    stage = _stage(config.train, steps=config.vae_steps, lr=config.vae_lr, output_dir=str(run), ema_decay=None,
                   max_seconds=budget, resume=config.train.resume if (run / "checkpoints").is_dir() else None)  # fmt: skip
    trainer = Trainer(vae, objective, _loader(_Batches(x=data.audio), config.batch_size), stage)
    trainer.fit()
    trained: AudioVAE = trainer.unwrapped_model.eval()  # type: ignore[assignment]
    trained.fit_scaling(data.audio[:1024])
    return trained


def _encode_all(vae: AudioVAE, audio: Tensor, batch_size: int = 64) -> Tensor:
    dev = vae.latent_scale.device
    return torch.cat(
        [vae.encode(audio[i : i + batch_size].to(dev)).cpu() for i in range(0, len(audio), batch_size)]
    )


def _vocabulary(data: TrainingData) -> list[str]:
    extra: list[str] = []
    if data.info.get("source") == "synthetic":  # every note name and instrument word, seen in training or not
        extra = [f"{n}{o}" for n in NOTE_NAMES for o in range(2, 8)] + " ".join(
            INSTRUMENT_WORDS.values()
        ).split()
    return build_vocabulary(data.captions, extra)


def _refuse_previous_run(config: AudioTrainConfig) -> None:
    run = Path(config.train.output_dir)
    found = [name for name in (*RUN_FILES, PIPELINE_DIR, VAE_RUN) if (run / name).exists()]
    if config.train.resume is None and found:
        raise ValueError(
            f"output_dir: {run} already holds a training run ({', '.join(found)}); continue it with "
            "--set train.resume=latest, or choose another --out"
        )


def train(
    config: AudioTrainConfig,
    *,
    save: bool = True,
    notes: Callable[[str], None] | None = None,
    progress: bool = True,
) -> AudioPipeline:
    """Train the VAE and the latent DiT as ``config`` says (see the module docstring for the run folder) and
    return the :class:`AudioPipeline` (also saved in ``pipeline/`` when ``save``). Initialisation is seeded by
    ``config.train.seed``; the caller's global RNG is left as it was. A folder that already holds a run is
    refused unless ``config.train.resume`` continues it."""
    say = notes or (lambda line: print(f"note: {line}", file=sys.stderr, flush=True))
    device = resolve_device(config.train.device)
    _refuse_previous_run(config)
    data = load_training_data(config, progress=progress and config.train.progress_bar)
    for line in data.notes:
        say(line)
    run = Path(config.train.output_dir)
    write_json({"config": config, "data": data.info, "notes": data.notes}, run / CONFIG_FILE)
    vae = train_vae(data, config).to(device)
    latents = _encode_all(vae, data.audio)
    m = config.model
    dit_cfg = AudioDiTConfig(
        latent_dim=config.vae.latent_dim, latent_length=latents.shape[-1], width=m.width, depth=m.depth, heads=m.heads,
        patch_size=m.patch_size, text_width=m.text_width, text_layers=m.text_layers, text_heads=m.text_heads,
        text_max_length=m.text_max_length, max_seconds=m.max_seconds or config.data.clip_seconds,
        vocabulary=_vocabulary(data), pooled_text=m.pooled_text,
    )  # fmt: skip
    with seeded(config.train.seed):
        model = AudioDiT(dit_cfg)
    tokens = model.tokenize(data.captions, device="cpu")
    dataset = _Batches(
        x=latents, tokens=tokens, seconds_start=data.seconds_start, seconds_total=data.seconds_total
    )
    objective = build_objective(config.objective, config.cond_dropout)
    trainer = Trainer(model, objective, _loader(dataset, config.batch_size), _stage(config.train))
    trainer.fit()
    trained = trainer.ema_model if trainer.ema_model is not None else trainer.unwrapped_model
    schedule = "rectified-flow" if config.objective == "rectified_flow" else "vp-cosine"
    pipe = AudioPipeline(vae, trained.to(device).eval(), schedule, objective.prediction, config.data.sample_rate,
                         config.data.clip_seconds, data.info)  # type: ignore[arg-type]  # fmt: skip
    pipe.card.record_training(config)
    if save:
        pipe.save_pretrained(run / PIPELINE_DIR)
    return pipe
