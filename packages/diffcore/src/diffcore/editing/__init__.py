"""Editing with a trained model: inverse problems (inpainting, colourisation, SDEdit) and DDIM inversion.

- :mod:`~diffcore.editing.inpainting`: measurement-consistent sampling (RePaint-style resampling) for
  masks and channel means, and SDEdit.
- :mod:`~diffcore.editing.inversion`: deterministic DDIM inversion, decoding and interpolation.
"""

from diffcore.editing import inpainting, inversion

__all__ = ["inpainting", "inversion"]
