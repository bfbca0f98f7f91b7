"""Reading and writing the field's files (PLY), every write through :mod:`diffcore.io` (atomic).
Not implemented yet (issue #27)."""
