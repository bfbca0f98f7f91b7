"""Manifolds shared by several modalities: SO(3) (rotations, IGSO(3)) and the flat torus."""

from diffcore.manifolds import igso3, so3, torus

__all__ = ["igso3", "so3", "torus"]
