"""What this machine offers: its CPUs and, when `nvidia-smi` is present, its GPUs (catalog names).

The local target's counterpart of aws's sdk.py: the only module of the plugin that touches the host's GPU
tooling (it runs `nvidia-smi`; nothing imports NVML, CUDA or a framework). runtime/ only passes the
CUDA_VISIBLE_DEVICES / NVIDIA_VISIBLE_DEVICES variables through to the servers it starts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache

from provisioner import catalog
from provisioner.errors import MlplatError


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str  # as nvidia-smi reports it
    accelerator: str | None  # catalog name, None when the catalog does not know this GPU


@dataclass(frozen=True)
class Host:
    cpus: int
    gpus: tuple[Gpu, ...]

    def accelerators(self) -> frozenset[str]:
        return frozenset({"cpu", *(g.accelerator for g in self.gpus if g.accelerator)})

    def gpus_of(self, accelerator: str) -> list[Gpu]:
        return [g for g in self.gpus if g.accelerator == accelerator]


@lru_cache(maxsize=1)
def detect() -> Host:
    """`MLPLAT_LOCAL_GPUS` (e.g. "h100,h100" or "") overrides detection, for tests and odd drivers."""
    cpus = os.cpu_count() or 1
    override = os.environ.get("MLPLAT_LOCAL_GPUS")
    if override is not None:
        names = [n.strip() for n in override.split(",") if n.strip()]
        return Host(cpus, tuple(Gpu(i, n, _to_catalog(n)) for i, n in enumerate(names)))
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return Host(cpus, ())
    try:
        out = subprocess.run(
            [smi, "--query-gpu=index,name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return Host(cpus, ())
    gpus = []
    for line in out.splitlines():
        index, _, name = line.partition(",")
        if index.strip().isdigit():
            gpus.append(Gpu(int(index), name.strip(), _to_catalog(name.strip())))
    return Host(cpus, tuple(gpus))


def _to_catalog(name: str) -> str | None:
    """'NVIDIA H100 80GB HBM3' -> 'h100'; 'Tesla T4' -> 't4'; 'NVIDIA A100-SXM4-40GB' -> 'a100-40gb'."""
    lowered = name.lower().replace("nvidia", "").replace("tesla", "").strip()
    try:
        return catalog.normalize(lowered)
    except MlplatError:
        pass
    tokens = lowered.replace("-", " ").split()
    if "a100" in tokens:
        return "a100-80gb" if "80gb" in tokens else "a100-40gb"
    for token in tokens:
        try:
            return catalog.normalize(token)
        except MlplatError:
            continue
    return None
