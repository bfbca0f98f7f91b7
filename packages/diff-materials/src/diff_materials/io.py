"""Reading and writing the field's files (CIF), every write through :mod:`diffcore.io` (atomic).
Not implemented yet (issue #28)."""
