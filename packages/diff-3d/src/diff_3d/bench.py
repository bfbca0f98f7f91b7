"""``diffuse bench 3d``: reports honestly that the benchmark is not written yet (issue #27)."""

from diffcore.modality import not_implemented_bench

bench = not_implemented_bench("3d", "splat diffusion on generated primitives")
