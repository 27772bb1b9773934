"""Compute of the local target: a GPU pool is this host's GPUs (`local.gpu_pool`).

Import id: `<host name>/<address>`, the id apply records. A pool reserves nothing, so importing one only checks
that the id names this machine and that it has the pool's GPUs; the next plan is a no-op.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

from mlplat_plugins.local.base import LocalProvider
from provisioner.errors import MlplatError, ProviderError
from provisioner.provider import Created, Observed

if TYPE_CHECKING:
    from provisioner.operations import StepContext


class GpuPoolProvider(LocalProvider):
    """A pool on this host: reserves nothing, but checks the host still has the GPUs and names the devices."""

    def _devices(self, inputs: dict[str, Any]) -> dict[str, Any]:
        from mlplat_plugins.local.host import detect

        host = detect()
        accelerator = inputs["accelerator"]
        if accelerator == "cpu":
            return {"devices": "", "cpus": host.cpus, "accelerator": "cpu"}
        gpus = host.gpus_of(accelerator)[: inputs["gpus_per_node"]]
        if len(gpus) < inputs["gpus_per_node"]:
            raise MlplatError(
                f"this machine has {len(gpus)} {accelerator} GPU(s), the pool needs {inputs['gpus_per_node']}"
            )
        return {
            "devices": ",".join(str(g.index) for g in gpus),
            "cpus": host.cpus,
            "accelerator": accelerator,
        }

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        return Created(f"{socket.gethostname()}/{address}", self._devices(inputs))

    def find(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created | None:
        return None  # nothing is made outside the state, so an interrupted create is simply re-run

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        try:
            return Observed(dict(inputs), self._devices(inputs))
        except MlplatError:
            return None

    def update(self, id: str, prior: dict[str, Any], desired: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        return self._devices(desired)

    def delete(self, id: str, inputs: dict[str, Any], ctx: StepContext) -> None:
        return None

    def import_(self, address: str, id: str, inputs: dict[str, Any]) -> Observed | None:
        """The pool `id` of this machine, if it has the GPUs the stack file's pool needs."""
        expected = f"{socket.gethostname()}/{address}"
        if id != expected:
            raise ProviderError(address, f"{id!r} is not a GPU pool of this machine",
                                hint=f"a local pool's id is <host name>/<address>: here {expected}")
        try:
            return Observed(dict(inputs), self._devices(inputs))
        except MlplatError as err:
            raise ProviderError(address, err.message) from None
