"""``diffuse bench video``: reports honestly that the benchmark is not written yet (issue #25)."""

from diffcore.modality import not_implemented_bench

bench = not_implemented_bench("video", "spacetime DiT on generated moving-shapes clips")
