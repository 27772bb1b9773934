"""Stdlib-only runtime processes (model server, router) started by the ``local`` target."""
