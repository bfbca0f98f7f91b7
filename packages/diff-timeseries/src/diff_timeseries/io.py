"""Reading and writing the field's files (CSV), every write through :mod:`diffcore.io` (atomic).
Not implemented yet (issue #29)."""
