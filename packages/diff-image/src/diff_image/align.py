"""Alignment of a text-to-image shapes pipeline with :mod:`diffcore.alignment` (``diffuse image align ...``).

- **Pairs** (:func:`caption_pairs`): two samples of one caption; the caption-adherence oracle
  (:mod:`diff_image.metrics.adherence`, exact, read from the pixels) decides: the one that follows the caption
  wins; captions where both or neither pass are dropped.
- **Reward model** (:func:`train_reward`): a Bradley-Terry :class:`~diffcore.alignment.RewardModel` on
  :class:`CaptionImageFeatures`, a small CNN over the image (with coordinate channels, for the relations)
  modulated (FiLM, Perez et al. 2018) by an exact code of the caption (:func:`caption_code`).
- **Diffusion-DPO** (:func:`run_dpo`) on the pairs, with the pipeline's own objective, through the Trainer
  (checkpoints, ``train.max_seconds``, ``train.resume``); the reference is a frozen copy of the start.
- **DDPO** (:func:`run_ddpo`) with the learned reward: rollouts of the guided stochastic sampler, per-caption
  reward normalisation, clipped importance-ratio updates.
- **Safety** (:func:`safety_denoiser`): guidance away from a banned colour, weighted by a detector of that colour
  in the prompt's data estimate.

Measures (:func:`alignment_metrics`): adherence on one- and two-object captions, the win rate against the
reference on the same captions and noise (oracle-judged), the Frechet distance to the reference's samples and
the diversity (mean distance between samples of one caption).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffcore.alignment import (
    BradleyTerryObjective,
    DiffusionDPO,
    PerPromptNormalizer,
    PreferencePairs,
    RewardModel,
    SafetyGuidance,
    pair_accuracy,
    ppo_update,
    rollout,
)
from diffcore.device import resolve_device
from diffcore.io import read_json, write_json
from diffcore.pretrained import atomic_save_safetensors
from diffcore.rng import make_generator, seeded
from diffcore.sampling import grids
from diffcore.training import TrainConfig, Trainer
from torch import Tensor, nn

from diff_image.config import ImageAlignDDPOConfig, ImageAlignDPOConfig, ImageAlignRewardConfig
from diff_image.data.shapes import PALETTE, RELATIONS, SHAPES
from diff_image.metrics.adherence import caption_adherence, parse_caption
from diff_image.metrics.frechet import frechet_distance
from diff_image.pipeline import ImagePipeline, build_objective, shapes_eval_captions
from diff_image.pipeline.training import objective_name

__all__ = [
    "CaptionImageFeatures",
    "alignment_metrics",
    "caption_code",
    "caption_pairs",
    "load_reward",
    "reward_model",
    "run_ddpo",
    "run_dpo",
    "run_reward",
    "safety_denoiser",
    "save_reward",
    "train_reward",
]

COLOURS = tuple(PALETTE)
MAX_OBJECTS, MAX_RELATIONS = 3, 2
CODE_DIM = MAX_OBJECTS * (len(COLOURS) + len(SHAPES)) + MAX_RELATIONS * len(RELATIONS)
REWARD_FILE, REWARD_CONFIG = "model.safetensors", "reward.json"


def _require_text(pipe: ImagePipeline) -> None:
    if pipe.text_encoder is None or pipe.image_shape[0] != 3:
        raise ValueError("pipeline: alignment needs a text-to-image RGB shapes pipeline (text conditioning)")


# ------------------------------------------------------------------ captions and the reward model


def caption_code(captions: Sequence[str]) -> Tensor:
    """An exact code ``(B, CODE_DIM)`` of shapes captions: per object slot (up to 3) one-hot colour and shape, per
    relation slot (up to 2) one-hot relation (in caption order; zeros where a caption has fewer)."""
    rows = []
    for caption in captions:
        spec = parse_caption(caption)
        row = torch.zeros(CODE_DIM)
        width = len(COLOURS) + len(SHAPES)
        for k, (colour, shape) in enumerate(spec.objects[:MAX_OBJECTS]):
            row[k * width + COLOURS.index(colour)] = 1.0
            row[k * width + len(COLOURS) + SHAPES.index(shape)] = 1.0
        base = MAX_OBJECTS * width
        for k, rel in enumerate(spec.relations[:MAX_RELATIONS]):
            row[base + k * len(RELATIONS) + RELATIONS.index(rel.relation)] = 1.0
        rows.append(row)
    return torch.stack(rows)


class CaptionImageFeatures(nn.Module):
    """``features(image, caption_code=c) -> (B, 2 * width)``: a CNN over the RGB image and its pixel coordinates,
    each stage's channels scaled and shifted by the caption code (FiLM), then mean and max pooled.

    ``image``: ``(B, 3, H, W)`` in ``[-1, 1]``; ``caption_code``: ``(B, CODE_DIM)`` (:func:`caption_code`)."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.width = width
        self.stem = nn.Conv2d(5, width, 3, padding=1)
        self.stages = nn.ModuleList([nn.Conv2d(width, width, 3, stride=2, padding=1) for _ in range(2)])
        self.film = nn.Sequential(nn.Linear(CODE_DIM, 2 * width), nn.SiLU(), nn.Linear(2 * width, 6 * width))

    @property
    def feature_dim(self) -> int:
        return 2 * self.width

    def forward(self, image: Tensor, caption_code: Tensor) -> Tensor:
        """Features ``(B, 2 * width)`` of ``image`` ``(B, 3, H, W)`` in ``[-1, 1]`` given ``caption_code``
        ``(B, CODE_DIM)``: the CNN over the image and its coordinate channels, FiLM-modulated by the code,
        mean and max pooled."""
        b, _, h, w = image.shape
        ys = torch.linspace(-1, 1, h, device=image.device).reshape(1, 1, h, 1).expand(b, 1, h, w)
        xs = torch.linspace(-1, 1, w, device=image.device).reshape(1, 1, 1, w).expand(b, 1, h, w)
        film = self.film(caption_code.to(image.dtype)).reshape(b, 3, 2, self.width, 1, 1)
        z = self.stem(torch.cat([image, xs, ys], dim=1))
        for i, conv in enumerate([nn.Identity(), *self.stages]):
            z = conv(z)
            z = torch.nn.functional.silu(z * (1 + film[:, i, 0]) + film[:, i, 1])
        return torch.cat([z.mean((2, 3)), z.amax((2, 3))], dim=1)


def reward_model(width: int = 64, hidden: tuple[int, ...] = (128,)) -> RewardModel:
    """A reward model ``r(image, caption_code=...)`` with trainable :class:`CaptionImageFeatures`."""
    features = CaptionImageFeatures(width)
    return RewardModel(features, features.feature_dim, hidden=hidden, train_features=True)


def save_reward(model: RewardModel, directory: str | os.PathLike[str]) -> Path:
    """Write ``reward.json`` (its shape) and ``model.safetensors`` into ``directory``."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    hidden = [m.out_features for m in model.head if isinstance(m, nn.Linear)][:-1]
    write_json({"width": model.features.width, "hidden": hidden}, out / REWARD_CONFIG)
    atomic_save_safetensors(model.state_dict(), out / REWARD_FILE)
    return out


def load_reward(directory: str | os.PathLike[str], device: str | torch.device = "cpu") -> RewardModel:
    """A reward model written by :func:`save_reward`."""
    from safetensors.torch import load_file

    folder = Path(directory)
    cfg = read_json(folder / REWARD_CONFIG, "a reward model's reward.json (diffuse image align reward)")
    model = reward_model(int(cfg["width"]), tuple(cfg["hidden"]))
    model.load_state_dict(load_file(str(folder / REWARD_FILE)))
    return model.to(device).eval()


def score_images(
    reward: RewardModel, images: Tensor, captions: Sequence[str], batch_size: int = 256
) -> Tensor:
    """Rewards ``(N,)`` of images ``(N, 3, H, W)`` in ``[-1, 1]`` for their captions."""
    device = next(reward.parameters()).device
    codes = caption_code(captions)
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            out.append(
                reward(
                    images[i : i + batch_size].to(device), caption_code=codes[i : i + batch_size].to(device)
                )
            )
    return torch.cat(out).float().cpu()


# ------------------------------------------------------------------ pairs


def training_scenes(num: int, image_size: int, seed: int) -> tuple[list[str], Tensor]:
    """``num`` scenes, half one-object and half two-object, of a caption seed apart from the evaluation's: their
    captions and renders ``(num, 3, S, S)`` in ``[-1, 1]``."""
    from diff_image.pipeline import shapes_eval_dataset

    half = num // 2
    sets = [
        shapes_eval_dataset(num - half, 1, image_size, seed),
        shapes_eval_dataset(half, 2, image_size, seed),
    ]
    scenes = [d.sample(i) for d in sets for i in range(len(d))]
    return [s.caption for s in scenes], torch.stack([s.to_tensor() for s in scenes])


def training_captions(num: int, image_size: int, seed: int) -> list[str]:
    """The captions of :func:`training_scenes`."""
    return training_scenes(num, image_size, seed)[0]


def oracle_pass(images: Tensor, captions: Sequence[str]) -> Tensor:
    """1.0 where an image ``(N, 3, H, W)`` follows its caption (the adherence oracle), else 0.0."""
    report = caption_adherence(images.cpu(), list(captions))
    return torch.tensor([float(r.passed) for r in report.results])


def caption_pairs(
    pipe: ImagePipeline,
    captions: Sequence[str],
    sampler: str = "dpmpp_2m",
    steps: int = 20,
    guidance: float | None = None,
    seed: int = 0,
    batch_size: int = 256,
    renders: Tensor | None = None,
) -> tuple[PreferencePairs, dict[str, float]]:
    """Two samples per caption, judged by the oracle; pairs where exactly one passes (winner first).

    ``renders`` ``(N, 3, H, W)`` (the data scenes of the captions) adds *anchor pairs* where both samples fail:
    the render (which passes) against the first sample; for an undertrained model whose samples rarely pass.

    Returns the pairs (images in ``[-1, 1]``, ``cond={"caption_code": ...}``, ``prompts`` = the captions) and
    counts: ``captions``, ``pairs``, ``anchor_pairs``, ``pass_rate`` (of all samples)."""
    _require_text(pipe)
    gen = make_generator(seed, pipe.device)
    caps = list(captions)
    kw: dict[str, Any] = {
        "sampler": sampler,
        "steps": steps,
        "guidance": guidance,
        "prompt": caps,
        "batch_size": batch_size,
    }
    a = pipe.sample(len(caps), generator=gen, **kw).cpu()
    b = pipe.sample(len(caps), generator=gen, **kw).cpu()
    pa, pb = oracle_pass(a, caps), oracle_pass(b, caps)
    info = {"captions": float(len(caps)), "pass_rate": float(torch.cat([pa, pb]).mean()), "anchor_pairs": 0.0}
    if renders is not None:
        if renders.shape != a.shape:
            raise ValueError(f"renders: expected shape {tuple(a.shape)}, got {tuple(renders.shape)}")
        anchor = (pa == 0) & (pb == 0) & (oracle_pass(renders, caps) == 1)
        b = torch.where(anchor.reshape(-1, 1, 1, 1), renders.cpu(), b)
        pb = torch.where(anchor, torch.ones_like(pb), pb)
        info["anchor_pairs"] = float(anchor.sum())
    if bool((pa == pb).all()):
        raise ValueError(
            f"captions: none of {len(caps)} caption(s) gave one passing and one failing sample (pass rate "
            f"{info['pass_rate']:.2f}); use more captions, or anchor renders for an undertrained model"
        )
    metadata = {"labeller": "caption-adherence oracle", "seed": seed, "anchor_pairs": info["anchor_pairs"]}
    pairs = PreferencePairs.from_scores(a, b, pa, pb, {"caption_code": caption_code(caps)}, caps, metadata)
    info["pairs"] = float(len(pairs))
    return pairs, info


def train_reward(
    pairs: PreferencePairs,
    steps: int,
    batch_size: int,
    lr: float,
    width: int,
    output_dir: Path,
    seed: int,
    device: torch.device,
) -> RewardModel:
    """Fit a :func:`reward_model` on ``pairs`` with the Trainer (Bradley-Terry); run folder ``output_dir``."""
    with seeded(seed):
        model = reward_model(width)
    config = TrainConfig(
        steps=steps, lr=lr, warmup_steps=min(20, steps - 1), lr_schedule="cosine", min_lr_ratio=0.1, ema_decay=None,
        checkpoint_every=None, keep_last=1, output_dir=str(output_dir), seed=seed, tensorboard=False,
        device="cpu" if device.type == "cpu" else "auto", log_every=max(1, steps // 10), weight_decay=1e-4,
        progress_bar=False,
    )  # fmt: skip
    Trainer(
        model,
        BradleyTerryObjective(),
        pairs.loader(batch_size, generator=torch.Generator().manual_seed(seed)),
        config,
    ).fit()
    return model.eval()


def run_reward(
    pipe: ImagePipeline, config: ImageAlignRewardConfig, output_dir: str | os.PathLike[str]
) -> tuple[RewardModel, dict[str, float]]:
    """``diffuse image align reward``: oracle-labelled pairs of the pipeline's samples (``OUT/pairs``), a reward
    model trained on all but ``held_out`` of them (``OUT/reward``), its accuracy on the held-out pairs."""
    out = Path(output_dir)
    device = resolve_device(config.device)
    pipe.to(device)
    captions, scenes = training_scenes(config.num_captions, pipe.image_shape[-1], seed=20_000 + config.seed)
    renders = scenes if config.anchor_renders else None
    pairs, info = caption_pairs(
        pipe, captions, config.sampler, config.steps, config.guidance, config.seed, renders=renders
    )
    pairs.save(out / "pairs")
    train, held = pairs.split(config.held_out, generator=torch.Generator().manual_seed(config.seed))
    model = train_reward(
        train,
        config.train_steps,
        config.batch_size,
        config.lr,
        config.width,
        out / "reward_run",
        config.seed,
        device,
    )
    save_reward(model, out / "reward")
    metrics = {
        **{f"pairs_{k}": v for k, v in info.items()},
        "reward_train_accuracy": pair_accuracy(model, train.to(device)),
        "reward_heldout_accuracy": pair_accuracy(model, held.to(device)),
        "heldout_pairs": float(len(held)),
    }
    return model, metrics


# ------------------------------------------------------------------ DPO


class _PromptedPairs:
    """A pair objective after mapping the batch: prompts -> token ids (the pipeline's tokenizer), images ->
    the model's space (``encode``); the caption code is dropped (the diffusion network does not take it)."""

    def __init__(self, inner: Callable[..., Any], pipe: ImagePipeline) -> None:
        self.inner, self.pipe = inner, pipe

    def __call__(
        self, model: nn.Module, batch: dict[str, Any], generator: torch.Generator | None = None
    ) -> Any:
        device = batch["winner"].device
        prepared = {"input_ids": self.pipe.text_encoder.tokenize(list(batch["prompt"]), device)}
        with torch.no_grad():
            prepared["winner"] = self.pipe.encode(batch["winner"])
            prepared["loser"] = self.pipe.encode(batch["loser"])
        return self.inner(model, prepared, generator=generator)


def run_dpo(
    pipe: ImagePipeline, config: ImageAlignDPOConfig, pairs: PreferencePairs | None = None
) -> tuple[ImagePipeline, ImagePipeline, dict[str, float]]:
    """``diffuse image align dpo``: Diffusion-DPO of ``pipe`` on oracle-labelled pairs (``config.pairs`` folder,
    the ``pairs`` given, or fresh ones of ``config.num_captions`` captions), with the Trainer (run folder
    ``config.train.output_dir``; the pipeline is moved to its device). Returns ``(aligned, reference, info)``;
    ``pipe``'s own network is trained in place (the reference is a frozen copy)."""
    _require_text(pipe)
    device = resolve_device(config.train.device)
    pipe.to(device)
    info: dict[str, float] = {}
    if pairs is None and config.pairs:
        pairs = PreferencePairs.load(config.pairs)
    if pairs is None:
        captions = training_captions(
            config.num_captions, pipe.image_shape[-1], seed=30_000 + config.train.seed
        )
        pairs, counts = caption_pairs(
            pipe, captions, config.sampler, config.steps, config.guidance, config.train.seed
        )
        pairs.save(Path(config.train.output_dir) / "pairs")
        info.update({f"pairs_{k}": v for k, v in counts.items()})
    reference = copy.deepcopy(pipe)
    reference.model.requires_grad_(False).eval()
    network = pipe.network  # TextConditionedModel with the text encoder frozen
    pipe.text_encoder.requires_grad_(False)
    objective = build_objective(objective_name(pipe), pipe.schedule)
    dpo = DiffusionDPO(objective, reference.network.eval(), beta=config.beta, draws=config.draws)
    loader = pairs.loader(
        config.batch_size,
        generator=torch.Generator().manual_seed(config.train.seed),
        drop_last=len(pairs) >= config.batch_size,
    )
    summary = Trainer(network, _PromptedPairs(dpo, pipe), loader, config.train).fit()
    pipe.model.eval()
    info.update(
        {"dpo_steps": float(summary.steps), "dpo_seconds": summary.seconds, "dpo_pairs": float(len(pairs))}
    )
    return pipe, reference, info


# ------------------------------------------------------------------ DDPO


def run_ddpo(
    pipe: ImagePipeline,
    reward: RewardModel,
    config: ImageAlignDDPOConfig,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[ImagePipeline, ImagePipeline, dict[str, float]]:
    """``diffuse image align ddpo``: DDPO of ``pipe`` against ``reward`` (in place; returns ``(aligned,
    reference, info)``). Each iteration draws ``prompts_per_iteration`` captions x ``samples_per_prompt`` rollouts
    of the guided DDIM policy (``eta``, ``steps``, ending at ``t_end``), normalises the rewards per caption and
    makes ``inner_epochs`` clipped updates (:func:`diffcore.alignment.ppo_update`)."""
    _require_text(pipe)
    device = resolve_device(config.device)
    pipe.to(device)
    reward.to(device).eval()
    reward.requires_grad_(False)
    reference = copy.deepcopy(pipe)
    pipe.text_encoder.requires_grad_(False)
    params = [p for p in pipe.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    gen = make_generator(config.seed, device)
    cpu_gen = torch.Generator().manual_seed(config.seed)
    pool = training_captions(config.caption_pool, pipe.image_shape[-1], seed=40_000 + config.seed)
    normalizer = PerPromptNormalizer(buffer_size=config.buffer_size, min_count=config.min_count)
    grid = grids.resolve("uniform", pipe.denoiser().schedule, config.steps, 1.0, config.t_end)
    rewards_seen: list[float] = []
    logs: dict[str, float] = {}
    done = 0
    for _ in range(config.iterations):
        if should_stop is not None and should_stop():
            break
        pick = torch.randint(len(pool), (config.prompts_per_iteration,), generator=cpu_gen).tolist()
        captions = [pool[i] for i in pick for _ in range(config.samples_per_prompt)]
        pipe.model.eval()
        cond, uncond = pipe.condition(len(captions), prompt=captions)
        den = pipe.guided(pipe.denoiser(pipe.network), uncond, config.guidance)
        noise = torch.randn((len(captions), *pipe.sample_shape), generator=gen, device=device)
        rolled = rollout(den, noise, grid, eta=config.eta, cond=cond, generator=gen)
        r = score_images(reward, pipe.decode(rolled.samples), captions).to(device)
        rewards_seen.append(float(r.mean()))
        adv = normalizer(captions, r)
        pipe.model.train()
        for _ in range(config.inner_epochs):
            logs = ppo_update(
                den, rolled, adv, optimizer, batch_size=config.batch_size, clip_range=config.clip_range,
                adv_clip=config.adv_clip, timestep_fraction=config.timestep_fraction, max_grad_norm=1.0, generator=cpu_gen,
            )  # fmt: skip
        done += 1
    pipe.model.eval()
    info = {
        "ddpo_iterations": float(done),
        "ddpo_reward_first": rewards_seen[0] if rewards_seen else float("nan"),
        "ddpo_reward_last": rewards_seen[-1] if rewards_seen else float("nan"),
        **{f"ddpo_{k}": v for k, v in logs.items()},
    }
    return pipe, reference, info


# ------------------------------------------------------------------ safety


def colour_detector(colour: str, min_pixels: float = 4.0) -> Callable[..., Tensor]:
    """``q(x_t, t, x0) -> (B,)``: how sure the data estimate ``x0`` ``(B, 3, H, W)`` (pixels in ``[-1, 1]``) holds
    ``colour``: the number of pixels within the adherence oracle's tolerance of the palette colour, over
    ``min_pixels``, capped below 1."""
    if colour not in PALETTE:
        raise ValueError(f"colour: expected one of {COLOURS}, got {colour!r}")
    ref = torch.tensor(PALETTE[colour], dtype=torch.float32) / 127.5 - 1.0
    tolerance = 60.0 / 127.5  # AdherenceConfig.tolerance in [-1, 1] units

    def q(x: Tensor, t: Any, x0: Tensor) -> Tensor:
        dist = (x0.float().clamp(-1, 1) - ref.to(x0.device).reshape(1, 3, 1, 1)).norm(dim=1)
        count = (dist <= tolerance).float().sum((1, 2))
        return (count / min_pixels).clamp(max=0.95)

    return q


def safety_denoiser(
    pipe: ImagePipeline,
    captions: Sequence[str],
    concept: str,
    guidance: float | None,
    safety_scale: float = 1.0,
) -> tuple[Any, dict[str, Tensor]]:
    """``(denoiser, cond)`` sampling ``captions`` away from the colour ``concept``: :class:`SafetyGuidance` with the
    concept's estimate from the caption ``"a <concept> square"`` and the push weighted per sample by
    :func:`colour_detector` on the prompt's data estimate (pixel pipelines)."""
    _require_text(pipe)
    if pipe.autoencoder is not None:
        raise ValueError(
            "pipeline: safety guidance reads colours off the data estimate; a pixel pipeline is needed"
        )
    cond, uncond = pipe.condition(len(captions), prompt=list(captions))
    concept_ids = pipe.text_encoder.tokenize([f"a {concept} square"], device=pipe.device)
    den = SafetyGuidance(
        pipe.denoiser(pipe.network.eval()), uncond, {"input_ids": concept_ids}, scale=pipe.resolve_guidance(guidance),
        safety_scale=safety_scale, concept_prob=colour_detector(concept),
    )  # fmt: skip
    return den, cond


def concept_rate(images: Tensor, colour: str) -> Tensor:
    """Per image ``(N,)``: 1.0 if it holds an object of ``colour`` (read by the adherence oracle's detector)."""
    from diff_image.lora import concept_rate as rate

    return torch.tensor([rate(img[None], colour) for img in images])


# ------------------------------------------------------------------ measures


def _features(images: Tensor, kind: str) -> Tensor:
    if kind == "pixels":
        return torch.nn.functional.adaptive_avg_pool2d(images.float().cpu(), 8).flatten(1)
    from diff_image.data import ShapesConfig
    from diff_image.metrics import extract_features, shapes_classifier

    device = "cuda" if torch.cuda.is_available() else "cpu"
    clf = shapes_classifier(ShapesConfig(image_size=images.shape[-1]), device=device)
    return extract_features(clf, images)


def diversity(images: Tensor, group: int) -> float:
    """Mean pixel distance (RMS over pixels) between samples of one caption, ``images`` ordered in groups of
    ``group`` consecutive samples per caption."""
    x = images.float().cpu().reshape(-1, group, *images.shape[1:]).flatten(2)
    d = torch.cdist(x, x) / x.shape[-1] ** 0.5
    off = ~torch.eye(group, dtype=torch.bool)
    return float(d[:, off].mean())


def alignment_metrics(
    aligned: ImagePipeline,
    reference: ImagePipeline,
    num_per_kind: int,
    sampler: str = "dpmpp_2m",
    steps: int = 20,
    guidance: float | None = None,
    seed: int = 0,
    group: int = 4,
    fd_features: str = "pixels",
    reward: RewardModel | None = None,
) -> dict[str, float]:
    """Adherence of both pipelines on ``num_per_kind`` one- and two-object evaluation captions (each drawn
    ``group`` times, same noise for both pipelines), the aligned pipeline's oracle win rate against the reference
    (wins + ties / 2), the Frechet distance of each to fresh reference samples (``fd_features``: ``pixels``, 8x8
    mean-pooled, or ``classifier``: the shapes classifier's features) and the diversity; with ``reward``, the
    mean learned reward of each."""
    size = aligned.image_shape[-1]
    captions = [
        c
        for c in shapes_eval_captions(num_per_kind, 1, size) + shapes_eval_captions(num_per_kind, 2, size)
        for _ in range(group)
    ]
    draws = {}
    for name, pipe in (("aligned", aligned), ("reference", reference)):
        gen = make_generator(seed, pipe.device)
        draws[name] = pipe.sample(
            len(captions), sampler=sampler, steps=steps, guidance=guidance, prompt=captions, generator=gen
        ).cpu()
    gen = make_generator(seed + 1, reference.device)
    fresh = reference.sample(
        len(captions), sampler=sampler, steps=steps, guidance=guidance, prompt=captions, generator=gen
    ).cpu()
    one = np.array([len(parse_caption(c).objects) == 1 for c in captions])
    out: dict[str, float] = {}
    passes = {}
    f_fresh = _features(fresh, fd_features)
    for name, images in draws.items():
        p = oracle_pass(images, captions).numpy()
        passes[name] = p
        out[f"{name}_adherence_one_object"] = float(p[one].mean())
        out[f"{name}_adherence_two_object"] = float(p[~one].mean())
        out[f"{name}_frechet"] = frechet_distance(_features(images, fd_features), f_fresh)
        out[f"{name}_diversity"] = diversity(images, group)
        if reward is not None:
            out[f"{name}_reward"] = float(score_images(reward, images, captions).mean())
    wins = float(((passes["aligned"] == 1) & (passes["reference"] == 0)).sum())
    losses = float(((passes["aligned"] == 0) & (passes["reference"] == 1)).sum())
    out["win_rate"] = (wins + 0.5 * (len(captions) - wins - losses)) / len(captions)
    out["win_rate_decided"] = wins / (wins + losses) if wins + losses else 0.5
    out["num_images"] = float(len(captions))
    return out
