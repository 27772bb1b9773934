"""Stack-file model and loader. `load(path)` -> `LoadedStack` (typed `Platform` + source locations)."""

from provisioner.spec.loader import LoadedStack, load, loads

__all__ = ["LoadedStack", "load", "loads"]
