"""The field's own measures, offline: motion adherence on the moving-shapes set, Frechet distances on a feature
network the package trains itself ("FVD-local", not comparable with published FVD; standard I3D-FVD from a local
TorchScript file), temporal consistency, PSNR / SSIM."""

from diff_video.metrics.frechet import (
    FeatureNetConfig,
    VideoFeatureNet,
    feature_statistics,
    features_frechet,
    frechet_distance,
    i3d_fvd,
    train_feature_net,
)
from diff_video.metrics.motion import ObjectTrack, motion_adherence, track_objects
from diff_video.metrics.quality import psnr, ssim, temporal_consistency

__all__ = [
    "FeatureNetConfig",
    "ObjectTrack",
    "VideoFeatureNet",
    "feature_statistics",
    "features_frechet",
    "frechet_distance",
    "i3d_fvd",
    "motion_adherence",
    "psnr",
    "ssim",
    "temporal_consistency",
    "track_objects",
    "train_feature_net",
]
