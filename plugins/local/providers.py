"""Resource kinds of the local target → their providers (one module per component family: compute, storage,
registry, serving, front_door, monitoring; shared bits in base)."""

from __future__ import annotations

from mlplat_plugins.local.base import MARKER, LocalProvider
from mlplat_plugins.local.compute import GpuPoolProvider
from mlplat_plugins.local.front_door import FrontDoorProvider
from mlplat_plugins.local.monitoring import LocalMonitorProvider
from mlplat_plugins.local.registry import ImageRepositoryProvider, ModelVersionProvider, RegistryProvider
from mlplat_plugins.local.serving import ModelServerProvider, RouterProvider
from mlplat_plugins.local.storage import DirectoryProvider

__all__ = ["MARKER", "PROVIDERS"]  # MARKER: tests/contract_targets.py finds what the target made by it

PROVIDERS: dict[str, type[LocalProvider]] = {
    "local.directory": DirectoryProvider,
    "local.registry": RegistryProvider,
    "local.image_repository": ImageRepositoryProvider,
    "local.model_version": ModelVersionProvider,
    "local.gpu_pool": GpuPoolProvider,
    "local.model_server": ModelServerProvider,
    "local.router": RouterProvider,
    "local.front_door": FrontDoorProvider,
    "local.monitor": LocalMonitorProvider,
}
