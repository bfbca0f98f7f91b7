"""``diffuse bench materials``: reports honestly that the benchmark is not written yet (issue #28)."""

from diffcore.modality import not_implemented_bench

bench = not_implemented_bench("materials", "crystal diffusion on generated structures")
