"""Data of diff-3d: analytic primitives (:mod:`.primitives`), the default procedural set fitted to Gaussians
and cached (:mod:`.procedural`), and loaders for real data on local paths (:mod:`.real`: folders of 3DGS PLY
files, folders of NeRF-synthetic multi-view sets)."""
