"""Data of diff-materials: loaders for real data on local paths, and a small default set (generated toy crystals) generated
offline so every command runs on a fresh machine. Not implemented yet (issue #28)."""
