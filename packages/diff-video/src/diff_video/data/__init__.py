"""Data of diff-video: loaders for real data on local paths, and a small default set (generated moving-shapes clips) generated
offline so every command runs on a fresh machine. Not implemented yet (issue #25)."""
