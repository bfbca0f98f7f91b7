"""The field's own measures of quality and validity, computed offline. Not implemented yet (issue #28)."""
