"""Image pipelines: :class:`ImagePipeline` (sample, save, load), :func:`train` and the evaluations."""

from diff_image.pipeline.control import CONTROL_CHANNELS, ControlMapsModel, control_maps, train_controlnets
from diff_image.pipeline.core import PIPELINE_FILE, ImagePipeline
from diff_image.pipeline.evaluate import (
    ShapesAdherenceProbe,
    evaluate_digits,
    evaluate_shapes,
    shapes_eval_captions,
    shapes_eval_dataset,
)
from diff_image.pipeline.training import (
    PreparedObjective,
    build_objective,
    resolve_device,
    train,
    train_autoencoder,
)

__all__ = [
    "CONTROL_CHANNELS",
    "PIPELINE_FILE",
    "ControlMapsModel",
    "ImagePipeline",
    "PreparedObjective",
    "ShapesAdherenceProbe",
    "build_objective",
    "control_maps",
    "evaluate_digits",
    "evaluate_shapes",
    "resolve_device",
    "shapes_eval_captions",
    "shapes_eval_dataset",
    "train",
    "train_autoencoder",
    "train_controlnets",
]
