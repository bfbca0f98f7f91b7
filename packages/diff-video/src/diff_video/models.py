"""Networks of diff-video: configurations of the core backbones (:mod:`diffcore.nn`) and any field-specific
network. Not implemented yet (issue #25)."""
