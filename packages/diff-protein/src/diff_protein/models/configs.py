"""Sizes of the networks of diff-protein, as plain dataclasses (no torch), so that :mod:`diff_protein.config`
can nest them without loading the networks. The networks themselves are in :mod:`diff_protein.models.ipa` and
:mod:`diff_protein.models.sequence`, which re-export these classes.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FrameDenoiserConfig", "SequenceDenoiserConfig", "TaxonomyClassifierConfig"]


@dataclass
class FrameDenoiserConfig:
    """Sizes of the IPA frame denoiser (:class:`~diff_protein.models.ipa.FrameDenoiser`).

    Attributes:
        node_dim: width of the backbone network's single (per-residue) representation.
        pair_dim: width of the pair representation.
        num_blocks: IPA blocks of the backbone network.
        num_heads: IPA heads (AF2: 12).
        head_dim: width of an IPA head (AF2: 16).
        qk_points: query / key points per IPA head (AF2: 4).
        v_points: value points per IPA head (AF2: 8).
        coordinate_scale: angstrom -> network units (0.1: nm).
        max_relpos: clip of the relative residue index.
        num_bins: bins of the CA distograms of the noisy input and of the self-conditioning prediction.
        max_distance: largest binned CA distance (angstrom).
        self_condition: the network reads the previous CA prediction (self-conditioning, Chen et al. 2022).
        neighbour_features: every block also reads the exact geometry of each residue's chain neighbours in
            its own frame (``ipa.neighbour_geometry``), so bond lengths and angles are seen at full precision
            rather than through 1 A distogram bins.
    """

    node_dim: int = 128
    pair_dim: int = 64
    num_blocks: int = 4
    num_heads: int = 8
    head_dim: int = 16
    qk_points: int = 4
    v_points: int = 8
    coordinate_scale: float = 0.1
    max_relpos: int = 32
    num_bins: int = 22
    max_distance: float = 22.0
    self_condition: bool = True
    neighbour_features: bool = True

    def __post_init__(self) -> None:
        for name in ("node_dim", "pair_dim", "num_blocks", "num_heads", "head_dim", "qk_points", "v_points"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected a positive integer, got {getattr(self, name)}")
        if self.coordinate_scale <= 0 or self.max_distance <= 0 or self.num_bins < 2:
            raise ValueError("coordinate_scale > 0, max_distance > 0 and num_bins >= 2 expected")


@dataclass
class SequenceDenoiserConfig:
    """Sizes of the taxonomy-conditioned sequence denoiser (:class:`~diff_protein.models.sequence.SequenceDenoiser`).

    Attributes:
        vocab_size: tokens including the mask (21).
        num_classes: taxonomy labels including "unknown" (the null label for classifier-free guidance is the
            extra index ``num_classes``); training sets it from the data's label vocabulary.
        hidden_size: width of the sequence transformer.
        depth: blocks of the sequence transformer.
        num_heads: attention heads.
        mlp_ratio: hidden width of the MLPs over ``hidden_size``.
    """

    vocab_size: int = 21
    num_classes: int = 2
    hidden_size: int = 128
    depth: int = 4
    num_heads: int = 4
    mlp_ratio: float = 4.0

    def __post_init__(self) -> None:
        if self.vocab_size < 2 or self.num_classes < 1 or self.depth < 1:
            raise ValueError(
                f"vocab_size >= 2, num_classes >= 1, depth >= 1 expected; got {self.vocab_size}, "
                f"{self.num_classes}, {self.depth}"
            )
        if self.hidden_size % self.num_heads or self.hidden_size % 2:
            raise ValueError(
                f"hidden_size: expected an even width divisible by num_heads={self.num_heads}, got {self.hidden_size}"
            )


@dataclass
class TaxonomyClassifierConfig:
    """Sizes of the independent taxonomy classifier (:class:`~diff_protein.models.sequence.TaxonomyClassifier`).

    Attributes:
        vocab_size: tokens including the mask (21).
        num_classes: taxonomy labels including "unknown"; training sets it from the data's label vocabulary.
        hidden_size: width of the transformer encoder.
        depth: encoder layers.
        num_heads: attention heads.
    """

    vocab_size: int = 21
    num_classes: int = 2
    hidden_size: int = 64
    depth: int = 2
    num_heads: int = 4

    def __post_init__(self) -> None:
        if self.num_classes < 1 or self.hidden_size % self.num_heads or self.hidden_size % 2:
            raise ValueError("num_classes >= 1 and hidden_size even and divisible by num_heads expected")
