"""Real-time streaming generation (Kodaira et al. 2023, "StreamDiffusion") on any diffcore denoiser.

- :mod:`~diffcore.streaming.steps`: the step list (``t_index_list``) and the per-slot path coefficients;
- :mod:`~diffcore.streaming.guidance`: CFG and residual CFG (self-negative, one-time negative) in a stream;
- :mod:`~diffcore.streaming.batch`: the stream batch, one network call for the steps of successive frames;
- :mod:`~diffcore.streaming.filter`: the stochastic similarity filter;
- :mod:`~diffcore.streaming.acceleration`: ``torch.compile`` and torchao FP8 / INT8 weights;
- :mod:`~diffcore.streaming.stream`: :class:`FrameStream`, the whole per-frame call (filter, encoder, stream
  batch, decoder), optionally one CUDA graph.
"""

from diffcore.streaming.acceleration import QUANTIZATIONS, Quantization, compiled, quantize_weights
from diffcore.streaming.batch import NOISE_MODES, STEP_RULES, NoiseMode, StepRule, StreamBatch
from diffcore.streaming.filter import SimilarityFilter, cosine_similarity, skip_probability
from diffcore.streaming.guidance import GUIDANCE_MODES, GuidanceMode, guided, virtual_residual
from diffcore.streaming.steps import SlotCoefficients, stream_times
from diffcore.streaming.stream import STREAM_MODES, FrameStream, StreamConfig, StreamMode

__all__ = [
    "GUIDANCE_MODES",
    "NOISE_MODES",
    "QUANTIZATIONS",
    "STEP_RULES",
    "STREAM_MODES",
    "FrameStream",
    "GuidanceMode",
    "NoiseMode",
    "Quantization",
    "SimilarityFilter",
    "SlotCoefficients",
    "StepRule",
    "StreamBatch",
    "StreamConfig",
    "StreamMode",
    "compiled",
    "cosine_similarity",
    "guided",
    "quantize_weights",
    "skip_probability",
    "stream_times",
    "virtual_residual",
]
