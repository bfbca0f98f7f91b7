"""Reading and writing the field's files (WAV), every write through :mod:`diffcore.io` (atomic).
Not implemented yet (issue #26)."""
