"""A real PostgreSQL server for the tests (placeholder: being written)."""
