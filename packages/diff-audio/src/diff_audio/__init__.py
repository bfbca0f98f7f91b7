"""Audio diffusion: a VAE-latent DiT on waveforms, through torchaudio."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("diff-audio")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = ["__version__"]
