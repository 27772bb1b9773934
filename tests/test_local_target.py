"""The local target's own rules: the host's GPUs bound what a pool may ask for; endpoints stay on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import run_mlplat

POOL_STACK = """\
apiVersion: mlplat/v1
metadata: {{name: gpus}}
clusters:
  - name: train
    gpu_pools:
      - {{name: big, accelerator: {accelerator}, gpus_per_node: {gpus}}}
"""


def validate(tmp_path: Path, text: str, gpus: str) -> tuple[int, str]:
    (tmp_path / "stack.yaml").write_text(text)
    proc = run_mlplat("validate", "-f", "stack.yaml", cwd=tmp_path, check=False, env={"MLPLAT_LOCAL_GPUS": gpus})
    return proc.returncode, proc.stderr + proc.stdout


def test_cpu_only_host_refuses_a_gpu_pool_and_says_what_it_offers(tmp_path: Path) -> None:
    code, out = validate(tmp_path, POOL_STACK.format(accelerator="H100", gpus=8), gpus="")
    assert code == 1
    assert "stack.yaml:6:21: clusters[0].gpu_pools[0].accelerator:" in out
    assert "does not offer accelerator 'h100' for training (offered: cpu)" in out
    assert "Traceback" not in out


def test_host_with_fewer_gpus_than_the_pool_needs_is_refused(tmp_path: Path) -> None:
    code, out = validate(tmp_path, POOL_STACK.format(accelerator="l4", gpus=4), gpus="NVIDIA L4,NVIDIA L4")
    assert code == 1
    assert "needs 4 x l4 and this machine has 2" in out


@pytest.mark.parametrize("reported", ["NVIDIA L4", "Tesla T4", "NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB HBM3"])
def test_gpus_named_as_nvidia_smi_reports_them_satisfy_their_catalog_pool(tmp_path: Path, reported: str) -> None:
    from mlplat_plugins.local.host import _to_catalog

    accelerator = _to_catalog(reported)
    assert accelerator is not None
    code, out = validate(tmp_path, POOL_STACK.format(accelerator=accelerator, gpus=1), gpus=reported)
    assert code == 0, out


def test_endpoint_on_a_public_address_without_auth_is_refused(tmp_path: Path) -> None:
    text = """\
apiVersion: mlplat/v1
metadata: {name: public}
targets:
  local: {host: 0.0.0.0}
registry:
  name: models
  models: [{name: iris, version: "1", artifact: m.json}]
serving:
  - name: iris
    paths: {production: {model: "iris:1"}}
"""
    (tmp_path / "m.json").write_text("{}")
    code, out = validate(tmp_path, text, gpus="")
    assert code == 1
    assert "stack.yaml:9:5: serving[0]: endpoint 'iris' would listen on 0.0.0.0 without authentication" in out
