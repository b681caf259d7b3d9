"""The report: one AssayReport built from a session's cells, its summary figures and result codes."""
