"""Data of diff-audio: loaders for real data on local paths, and a small default set (generated tones and chirps) generated
offline so every command runs on a fresh machine. Not implemented yet (issue #26)."""
