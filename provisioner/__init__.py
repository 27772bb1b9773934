"""mlplat core: stack-file model, planning engine, state, plugin system. Imports no cloud SDK."""

__version__ = "0.1.0"
