"""Networks of diff-3d: configurations of the core backbones (:mod:`diffcore.nn`) and any field-specific
network. Not implemented yet (issue #27)."""
