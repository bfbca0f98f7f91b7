"""Data: the generated default sets (backbones, sequence families) and readers for real files."""
