"""Scoring a :class:`~diff_3d.pipeline.core.SplatPipeline` against reference objects of its training data's kind.

Metrics (``metrics.json``):

- ``cov``, ``mmd_cd``, ``one_nna``: coverage, minimum matching distance (Chamfer) and 1-nearest-neighbour accuracy
  (Achlioptas et al. 2018; Yang et al. 2019) of the generated objects' Gaussian centres against reference surface
  samples, ``points`` per object (:mod:`diff_3d.metrics`); ``one_nna`` is 0.5 at best;
- ``class_adherence``: the fraction of generated objects the render classifier (:mod:`diff_3d.classifier`,
  trained on true renders) assigns to the class they were asked for (class pipelines, and caption pipelines
  whose reference captions name the class); ``classifier_accuracy``: that classifier on held-out true renders;
- ``render_fd``: Frechet distance of the classifier's features between generated and reference renders, and
  ``render_fd_floor``: the same between two sets of true renders (what a perfect generator would score).

Reference objects: for a generated set, fresh draws of its shapes (``heldout_seed``): surface samples for the
point metrics, :func:`~diff_3d.data.primitives.surface_gaussians` for the renders; for a folder, its own objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffcore.device import resolve_device
from diffcore.io import write_json
from diffcore.rng import make_generator
from torch import Tensor

from diff_3d.config import SplatEvaluateConfig
from diff_3d.gaussians import Gaussians
from diff_3d.pipeline.core import SplatPipeline
from diff_3d.pipeline.data import features_to_gaussians, folder_set, primitive_shapes

__all__ = ["Reference", "evaluate", "point_cloud_metrics", "reference_objects"]


@dataclass
class Reference:
    """Reference objects: surface points ``(M, P, 3)``, renderable Gaussians, labels ``(M,)`` and captions."""

    points: Tensor
    objects: list[Gaussians]
    labels: Tensor
    captions: list[str] = field(default_factory=list)


def _centres(g: Gaussians, points: int, generator: torch.Generator) -> Tensor:
    n = g.means.shape[0]
    idx = (
        torch.randperm(n, generator=generator)[:points]
        if n >= points
        else torch.randint(0, n, (points,), generator=generator)
    )
    return g.means[idx].detach().float().cpu()


def reference_objects(pipeline: SplatPipeline, num: int, points: int, seed: int) -> Reference:
    """``num`` reference objects of the pipeline's training data (module docstring)."""
    from diff_3d.data.primitives import sample_surface, surface_gaussians

    data = pipeline.data
    g = torch.Generator().manual_seed(seed)
    if data.get("data_path"):
        ref = folder_set(data["data_path"], pipeline.budget, seed)
        objects = [features_to_gaussians(f) for f in ref.features[:num]]
        pts = torch.stack([_centres(o, points, g) for o in objects])
        return Reference(pts, objects, ref.labels[:num], ref.captions[:num])
    shapes = _reference_shapes(data.get("dataset", "primitives"), num, seed)
    pts = torch.stack([sample_surface(s, points, g)[0].float() for s in shapes])
    objects = [surface_gaussians(s, pipeline.budget, g) for s in shapes]
    return Reference(pts, objects, torch.tensor([s.label for s in shapes]), [s.caption for s in shapes])


def _reference_shapes(dataset: str, num: int, seed: int) -> list[Any]:
    if dataset == "procedural":
        from diff_3d.data.procedural import procedural_shapes

        return list(procedural_shapes(num, seed=seed))
    return primitive_shapes(num, seed)


def point_cloud_metrics(generated: Tensor, reference: Tensor) -> dict[str, float]:
    """COV, MMD-CD and 1-NNA of point clouds ``generated`` ``(B, P, 3)`` against ``reference`` ``(M, P, 3)``
    (:func:`diff_3d.metrics.generation_metrics`)."""
    from diff_3d.metrics import generation_metrics

    return {k: float(v) for k, v in generation_metrics(generated, reference).items()}


def _requested_labels(pipeline: SplatPipeline, ref: Reference, n: int) -> tuple[dict[str, Any], list[int]]:
    """The conditions of the ``n`` generated objects (the reference's classes / captions, cycled) and the class
    each is meant to show (-1: none)."""
    labels = (ref.labels.tolist() * -(-n // max(1, len(ref.labels))))[:n]
    if pipeline.conditioning == "class":
        return {"classes": labels}, labels
    if pipeline.conditioning == "caption":
        captions = (ref.captions * -(-n // max(1, len(ref.captions))))[:n]
        return {"prompts": captions}, labels
    return {}, [-1] * n


def evaluate(
    pipeline: SplatPipeline, config: SplatEvaluateConfig, *, out: str | Path | None = None
) -> dict[str, float]:
    """Generate ``config.num_samples`` objects and score them (module docstring); with ``out``, write
    ``out/metrics.json``. Returns metric name -> value."""
    from diff_3d.classifier import train_render_classifier
    from diff_3d.views import render_views, view_cameras

    device = resolve_device(config.device)
    pipeline.to(device)
    ref = reference_objects(pipeline, config.num_reference, config.points, config.heldout_seed)
    cond, wanted = _requested_labels(pipeline, ref, config.num_samples)
    gen = make_generator(config.seed, device)
    objects = pipeline.generate(
        config.num_samples, guidance=config.guidance, sampler=config.sampler, steps=config.steps,
        budget=config.budget, generator=gen, **cond,
    )  # fmt: skip
    g = torch.Generator().manual_seed(config.seed)
    pts = torch.stack([_centres(o, config.points, g) for o in objects])
    metrics = point_cloud_metrics(pts, ref.points)
    metrics["num_samples"] = float(len(objects))
    names = pipeline.class_names
    if config.classifier_steps > 0 and names and int(ref.labels.min()) >= 0:
        extent = float(pipeline.data.get("extent", 1.0))
        cams = view_cameras(config.views, config.image_size, extent)
        train_ref = reference_objects(pipeline, max(8 * len(names), 48), 8, config.heldout_seed + 1)
        train_views = render_views(train_ref.objects, cams, device)
        clf = train_render_classifier(
            train_views, train_ref.labels, len(names), config.classifier_steps, config.seed, device
        )
        gen_views, ref_views = render_views(objects, cams, device), render_views(ref.objects, cams, device)
        from diff_image.metrics.frechet import frechet_distance

        metrics["classifier_accuracy"] = clf.val_accuracy
        metrics["render_fd"] = frechet_distance(clf.features(gen_views), clf.features(ref_views))
        metrics["render_fd_floor"] = frechet_distance(clf.features(train_views), clf.features(ref_views))
        asked = torch.tensor(wanted)
        if bool((asked >= 0).any()):
            pred = clf.logits(gen_views).argmax(-1)
            metrics["class_adherence"] = float((pred[asked >= 0] == asked[asked >= 0]).float().mean())
    if out is not None:
        write_json(metrics, Path(out) / "metrics.json")
    return metrics
