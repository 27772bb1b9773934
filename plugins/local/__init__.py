"""The ``local`` target: realizes ML platform resources as processes on this machine."""
