"""The local web UI (``diffuse serve``): a node-graph editor for :mod:`diffcore.workflows`, a run queue with live
progress and previews, a gallery of outputs and a page per ``diffuse bench`` report.

The server is the standard library's threaded HTTP server (:mod:`diffcore.ui.server`); the front end is plain
JavaScript and CSS in ``static/`` (no build step), shipped in the wheel.
"""
