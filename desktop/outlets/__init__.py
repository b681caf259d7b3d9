"""Outlets: every renderer of an AssayReport — csv, hl7, fhir, lis (the drop folder), text (the CLI)
and pdf (QtGui only, no widgets). None recomputes a number; each lays out the one report."""
