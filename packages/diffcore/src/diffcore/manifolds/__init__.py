"""Manifolds shared by several modalities: SO(3) (rotations, IGSO(3)) and the flat torus."""

from diffcore.manifolds import so3

__all__ = ["so3"]
