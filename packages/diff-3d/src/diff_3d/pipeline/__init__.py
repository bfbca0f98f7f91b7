"""``SplatPipeline`` and the three verbs every modality offers: :func:`train`, :func:`sample`, :func:`evaluate`."""

from diff_3d.pipeline.core import SplatPipeline
from diff_3d.pipeline.evaluation import evaluate
from diff_3d.pipeline.sampling import sample
from diff_3d.pipeline.training import train

__all__ = ["SplatPipeline", "evaluate", "sample", "train"]
