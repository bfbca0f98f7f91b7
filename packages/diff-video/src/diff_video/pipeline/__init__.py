"""``VideoPipeline`` and the three verbs every modality offers: :func:`train`, :func:`sample`, :func:`evaluate`
(and :func:`image_to_video`)."""

from diff_video.pipeline.core import FrameConditioned, VideoPipeline, flow_schedule
from diff_video.pipeline.evaluation import evaluate
from diff_video.pipeline.sampling import image_to_video, sample
from diff_video.pipeline.training import VideoFlowObjective, build_training_data, train

__all__ = [
    "FrameConditioned",
    "VideoFlowObjective",
    "VideoPipeline",
    "build_training_data",
    "evaluate",
    "flow_schedule",
    "image_to_video",
    "sample",
    "train",
]
