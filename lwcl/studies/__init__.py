"""Diagnostic studies behind the tables of docs/results.md (each runnable as ``python -m lwcl.studies.<name>``)."""
