"""Reading and writing the field's files (MP4 / GIF), every write through :mod:`diffcore.io` (atomic).
Not implemented yet (issue #25)."""
