"""Evaluation of trained pipelines with the package's offline metrics.

* :func:`evaluate` — the verb every modality offers: picks the digits or the shapes metrics from what the
  pipeline is (class-conditional with 10 classes, or text-conditioned) and returns name -> value;
* :func:`evaluate_digits` — class accuracy of guided samples by the independent digits classifier, Frechet
  distance in its feature space against the test split, the train-vs-test floor of that distance, and
  improved precision / recall.
* :func:`evaluate_shapes` — caption adherence of text-to-image samples, read from the pixels, separately
  for one-object and two-object captions; :class:`ShapesAdherenceProbe` measures it during training.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffcore.device import resolve_device
from diffcore.rng import make_generator
from diffcore.training import Callback, Trainer
from torch import Tensor

from diff_image.config import ImageEvaluateConfig
from diff_image.data import DigitsDataset, ShapesConfig, ShapesDataset
from diff_image.metrics import (
    caption_adherence,
    classifier_accuracy,
    digits_classifier,
    extract_features,
    frechet_distance,
    precision_recall,
)
from diff_image.metrics.adherence import ImageAdherence, parse_caption
from diff_image.pipeline.core import ImagePipeline

__all__ = [
    "ShapesAdherenceProbe",
    "evaluate",
    "evaluate_and_sample",
    "evaluate_digits",
    "evaluate_shapes",
    "shapes_eval_captions",
    "shapes_eval_dataset",
]


def evaluate(pipeline: ImagePipeline, config: ImageEvaluateConfig) -> dict[str, float]:
    """Score ``pipeline`` on ``config.device``: :func:`evaluate_digits` for a class-conditional digits pipeline,
    :func:`evaluate_shapes` for a text-to-image shapes pipeline (``config.num_samples`` captions per kind).

    Returns metric name -> value (see those functions; counts as floats)."""
    return evaluate_and_sample(pipeline, config)[0]


def evaluate_and_sample(
    pipeline: ImagePipeline, config: ImageEvaluateConfig
) -> tuple[dict[str, float], Tensor]:
    """:func:`evaluate`'s metrics and the scored samples ``(N, C, H, W)`` in ``[-1, 1]`` on the CPU (from a
    quantised copy of the pipeline with ``config.quantize``)."""
    pipeline.to(resolve_device(config.device))
    pipeline = pipeline.quantized(config.quantize)
    guidance = pipeline.resolve_guidance(config.guidance)  # an error first, if guidance cannot apply
    run = (config.num_samples, config.sampler, config.steps, guidance, config.seed)
    if pipeline.num_classes:
        metrics, samples, _ = evaluate_digits(pipeline, *run)
    elif pipeline.text_encoder is not None:
        metrics, samples, _ = evaluate_shapes(pipeline, *run, holdout=config.holdout)
    else:
        raise ValueError(
            "pipeline: evaluate needs a class-conditional digits or a text-conditioned shapes pipeline, "
            "got an unconditional one"
        )
    return {k: float(v) for k, v in metrics.items()}, samples


def evaluate_digits(
    pipe: ImagePipeline,
    num_samples: int = 1000,
    sampler: str = "dpmpp_2m",
    steps: int = 20,
    guidance: float = 2.0,
    seed: int = 0,
    classifier_cache: str | None = None,
) -> tuple[dict[str, float], Tensor, Tensor]:
    """Sample ``num_samples`` digits (labels cycling 0..9) and score them.

    Returns ``(metrics, samples (N, 1, S, S), labels (N,))``; metrics: ``class_accuracy``, ``frechet``,
    ``frechet_train_test`` (the floor: train split vs test split), ``frechet_ratio``, ``precision``, ``recall``.
    """
    if pipe.num_classes != 10:
        raise ValueError(
            f"pipe: expected a class-conditional digits pipeline (10 classes), got {pipe.num_classes}"
        )
    size = pipe.image_shape[-1]
    clf = digits_classifier(size=size, cache_dir=classifier_cache)
    labels = torch.arange(num_samples) % 10
    gen = make_generator(seed, pipe.device)
    samples = pipe.sample(
        num_samples, sampler=sampler, steps=steps, guidance=guidance, y=labels, generator=gen
    ).cpu()
    train, test = DigitsDataset("train", size), DigitsDataset("test", size)
    f_fake, f_test, f_train = (extract_features(clf, x) for x in (samples, test.images, train.images))
    fd, floor = frechet_distance(f_fake, f_test), frechet_distance(f_train, f_test)
    pr = precision_recall(f_test, f_fake)
    metrics = {
        "class_accuracy": classifier_accuracy(clf, samples, labels),
        "frechet": fd,
        "frechet_train_test": floor,
        "frechet_ratio": fd / floor if floor > 0 else float("inf"),
        "precision": pr.precision,
        "recall": pr.recall,
        "num_samples": float(num_samples),
    }
    return metrics, samples, labels


def shapes_eval_dataset(
    num: int, objects: int, image_size: int = 32, seed: int = 10_000, holdout: tuple[str, ...] = ()
) -> ShapesDataset:
    """``num`` scenes with exactly ``objects`` objects, drawn with a seed not used in training, without the
    ``holdout`` concepts (those the model never saw)."""
    cfg = ShapesConfig(image_size=image_size, min_objects=objects, max_objects=objects, holdout=holdout)
    return ShapesDataset(num, seed=seed, split="train" if holdout else "all", config=cfg)


def shapes_eval_captions(
    num: int, objects: int, image_size: int = 32, seed: int = 10_000, holdout: tuple[str, ...] = ()
) -> list[str]:
    """The captions of :func:`shapes_eval_dataset`."""
    data = shapes_eval_dataset(num, objects, image_size, seed, holdout)
    return [data.sample(i).caption for i in range(num)]


def _colours_found(result: ImageAdherence) -> bool:
    """Every colour the caption names is among the detected objects' colours."""
    colours = {d.colour for d in result.detected}
    return all(c in colours for c, _ in parse_caption(result.caption).objects)


def evaluate_shapes(
    pipe: ImagePipeline,
    num_per_kind: int = 200,
    sampler: str = "dpmpp_2m",
    steps: int = 30,
    guidance: float = 4.0,
    seed: int = 0,
    holdout: tuple[str, ...] = (),
    caption_seed: int = 10_000,
) -> tuple[dict[str, Any], Tensor, list[str]]:
    """Caption adherence on ``num_per_kind`` one-object and as many two-object captions (with relations).

    ``caption_seed`` draws the captions (the default 10 000 is never a training seed here); ``seed`` the noise.

    Returns ``(metrics, samples, captions)``; metrics: ``adherence_one_object``, ``adherence_two_object``,
    ``adherence``, and the weaker diagnostic ``colours_found_one_object`` / ``colours_found_two_object``: the
    fraction of images holding an object of every colour the caption names (shapes, extras, relations unchecked).
    """
    if pipe.text_encoder is None:
        raise ValueError("pipe: expected a text-conditioned pipeline")
    size = pipe.image_shape[-1]
    captions = shapes_eval_captions(num_per_kind, 1, size, caption_seed, holdout)
    captions += shapes_eval_captions(num_per_kind, 2, size, caption_seed, holdout)
    gen = make_generator(seed, pipe.device)
    samples = pipe.sample(
        len(captions), sampler=sampler, steps=steps, guidance=guidance, prompt=captions, generator=gen
    )
    report = caption_adherence(samples.cpu(), captions)
    # split like the report: by the objects the caption names (a scene with no room for its second object
    # has a one-object caption)
    found = {
        n: [_colours_found(r) for r in report.results if (r.num_objects == 1) == (n == 1)] for n in (1, 2)
    }
    metrics = {
        "adherence_one_object": report.one_object,
        "adherence_two_object": report.multi_object,
        "adherence": report.overall,
        "colours_found_one_object": float(np.mean(found[1])) if found[1] else float("nan"),
        "colours_found_two_object": float(np.mean(found[2])) if found[2] else float("nan"),
        "num_images": len(captions),
    }
    return metrics, samples.cpu(), captions


class ShapesAdherenceProbe(Callback):
    """A Trainer callback that measures caption adherence of the model being trained at chosen steps.

    It samples from the EMA weights when the Trainer keeps them (else the live weights, put back in training
    mode afterwards) on ``num_per_kind`` one- and two-object captions of a seed the evaluation does not use,
    so a learning curve costs no extra training run. ``history`` holds one dict per probe:
    ``{"step", "adherence_one_object", "adherence_two_object", "adherence", "seconds"}``.

    Args:
        at_steps: optimizer steps after which to probe.
        schedule, prediction: the pipeline's path and parameterisation (as :class:`ImagePipeline` takes them).
        sample_shape: ``(C, H, W)`` of the diffused tensor.
        num_per_kind, sampler, steps, guidance, holdout: as for :func:`evaluate_shapes`.
        seed: seeds the probe captions (offset from the evaluation's 10 000) and the noise.
        log_path: a JSONL file that gets each record as soon as it is measured (kept if the run is cut off).
    """

    def __init__(
        self,
        at_steps: Sequence[int],
        schedule: str,
        prediction: str,
        sample_shape: Sequence[int],
        num_per_kind: int = 100,
        sampler: str = "euler",
        steps: int = 30,
        guidance: float = 4.0,
        holdout: tuple[str, ...] = (),
        seed: int = 1,
        log_path: str | os.PathLike[str] | None = None,
    ) -> None:
        if any(s < 1 for s in at_steps):
            raise ValueError(f"at_steps: expected steps >= 1, got {list(at_steps)}")
        self.at_steps = set(int(s) for s in at_steps)
        self.schedule, self.prediction = schedule, prediction
        self.sample_shape = tuple(int(v) for v in sample_shape)
        self.num_per_kind, self.sampler, self.steps, self.guidance = num_per_kind, sampler, steps, guidance
        self.holdout, self.seed = holdout, seed
        self.log_path = Path(log_path) if log_path is not None else None
        self.history: list[dict[str, float]] = []

    def on_step_end(self, trainer: Trainer, step: int) -> None:
        if step not in self.at_steps:
            return
        start = time.perf_counter()
        model = trainer.ema_model if trainer.ema_model is not None else trainer.unwrapped_model
        was_training = model.training
        pipe = ImagePipeline(
            model.backbone,  # a TextConditionedModel
            self.schedule,
            self.prediction,
            text_encoder=model.text_encoder,
            sample_shape=self.sample_shape,
        )
        metrics, _, _ = evaluate_shapes(
            pipe, self.num_per_kind, self.sampler, self.steps, self.guidance, self.seed, self.holdout,
            caption_seed=10_000 + 1000 * self.seed,
        )  # fmt: skip
        model.train(was_training)
        keys = ("adherence_one_object", "adherence_two_object", "adherence", "colours_found_one_object",
                "colours_found_two_object")  # fmt: skip
        record = {k: float(metrics[k]) for k in keys}
        self.history.append({"step": float(step), **record, "seconds": time.perf_counter() - start})
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with self.log_path.open("a") as f:
                f.write(json.dumps(self.history[-1]) + "\n")
