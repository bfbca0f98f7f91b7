"""``diffuse bench audio``: reports honestly that the benchmark is not written yet (issue #26)."""

from diffcore.modality import not_implemented_bench

bench = not_implemented_bench("audio", "VAE-latent DiT on generated waveforms")
