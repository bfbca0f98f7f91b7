"""Generative processes on residue frames SE(3)^N: FrameDiff diffusion and FrameFlow flow matching."""

from diff_protein.diffusion.base import AuxLossConfig, FrameProcess
from diff_protein.diffusion.frame_diffusion import FrameDiffusion, FrameDiffusionConfig
from diff_protein.diffusion.frame_flow import FrameFlow, FrameFlowConfig

__all__ = [
    "AuxLossConfig",
    "FrameDiffusion",
    "FrameDiffusionConfig",
    "FrameFlow",
    "FrameFlowConfig",
    "FrameProcess",
]
