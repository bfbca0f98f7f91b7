"""Data of diff-materials: the crystal representation and its graph batch, a default set of prototype crystals
generated offline from ionic radii, readers of CDVAE-style CSV files and folders of CIF files, and splits that
keep polymorphs together."""

from diff_materials.data.crystals import NUM_TYPES, Crystal, CrystalDataset, collate_crystals
from diff_materials.data.generated import KINDS, GeneratedConfig, generate_crystals, prototype
from diff_materials.data.loaders import LoadResult, read_cdvae_csv, read_cif_folder, read_crystals
from diff_materials.data.splits import deduplicate, polymorph_grouped_split, random_split

__all__ = [
    "KINDS",
    "NUM_TYPES",
    "Crystal",
    "CrystalDataset",
    "GeneratedConfig",
    "LoadResult",
    "collate_crystals",
    "deduplicate",
    "generate_crystals",
    "polymorph_grouped_split",
    "prototype",
    "random_split",
    "read_cdvae_csv",
    "read_cif_folder",
    "read_crystals",
]
