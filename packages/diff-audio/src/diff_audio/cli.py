"""Registration of ``diff-audio`` with the ``diffuse`` command line (entry point ``diffcore.modalities``)."""

from diffcore.modality import Modality, not_implemented_bench

modality = Modality(
    name="audio",
    description="Audio diffusion: a VAE-latent DiT on waveforms, through torchaudio.",
    bench=not_implemented_bench("audio", "VAE-latent DiT on generated waveforms"),
)
