"""Every toy resource kind and its provider class."""

from __future__ import annotations

from toy_plugin.base import ToyProvider
from toy_plugin.registry import Model
from toy_plugin.serving import Deployment, Endpoint
from toy_plugin.space import Space
from toy_plugin.storage import Share

PROVIDERS: dict[str, type[ToyProvider]] = {
    "toy.space": Space,
    "toy.share": Share,
    "toy.model": Model,
    "toy.deployment": Deployment,
    "toy.endpoint": Endpoint,
}
