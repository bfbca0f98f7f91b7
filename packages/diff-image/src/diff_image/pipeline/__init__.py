"""Image pipelines: :class:`ImagePipeline` (sample, save, load), the verbs :func:`train`, :func:`sample` and
:func:`evaluate`, the digits and shapes evaluations behind ``evaluate``, and ControlNets."""

from diff_image.pipeline.control import CONTROL_CHANNELS, ControlMapsModel, control_maps, train_controlnets
from diff_image.pipeline.core import PIPELINE_FILE, ImagePipeline
from diff_image.pipeline.evaluation import (
    ShapesAdherenceProbe,
    evaluate,
    evaluate_and_sample,
    evaluate_digits,
    evaluate_shapes,
    shapes_eval_captions,
    shapes_eval_dataset,
)
from diff_image.pipeline.sampling import sample
from diff_image.pipeline.training import (
    PreparedObjective,
    build_objective,
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
    "evaluate",
    "evaluate_and_sample",
    "evaluate_digits",
    "evaluate_shapes",
    "sample",
    "shapes_eval_captions",
    "shapes_eval_dataset",
    "train",
    "train_autoencoder",
    "train_controlnets",
]
