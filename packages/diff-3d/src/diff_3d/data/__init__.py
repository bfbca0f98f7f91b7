"""Data of diff-3d: loaders for real data on local paths, and a small default set (generated splat primitives) generated
offline so every command runs on a fresh machine. Not implemented yet (issue #27)."""
