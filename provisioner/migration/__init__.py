"""Moving components between targets: planned as phases, journaled, resumable, reversible (see model.py)."""
