"""Data sets of diff-image: sklearn digits, generated coloured shapes with captions, local image folders."""

from diff_image.data.digits import DigitsDataset, digits_split_indices
from diff_image.data.folder import ImageFolderDataset, SkippedFile
from diff_image.data.shapes import (
    CONTROL_KINDS,
    PALETTE,
    SHAPES,
    Relation,
    ShapeObject,
    ShapesConfig,
    ShapesDataset,
    ShapesSample,
    generate_sample,
)
from diff_image.data.transforms import ImageTransform, pil_to_tensor

__all__ = [
    "CONTROL_KINDS",
    "PALETTE",
    "SHAPES",
    "DigitsDataset",
    "ImageFolderDataset",
    "ImageTransform",
    "Relation",
    "ShapeObject",
    "ShapesConfig",
    "ShapesDataset",
    "ShapesSample",
    "SkippedFile",
    "digits_split_indices",
    "generate_sample",
    "pil_to_tensor",
]
