"""Data of diff-timeseries: loaders for real data on local paths, and a small default set (generated seasonal series with captions) generated
offline so every command runs on a fresh machine. Not implemented yet (issue #29)."""
