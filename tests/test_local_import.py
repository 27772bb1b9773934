"""`mlplat import` on the local target: a volume, a registry, an image repository and a model version made by
hand are adopted into the state (checked to be of their kind first), plan as noop when they match the stack file
(or show the differing field), are left alone by apply and deleted by destroy. Servers and GPU pools are imported
back only as mlplat made them. The host's GPUs are the target's discovery: a saved plan is refused on a changed
host."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from provisioner.api import Stack
from provisioner.errors import PlanError, ProviderError

from conftest import STACKS, run_mlplat

STACK = """\
apiVersion: mlplat/v1
metadata: {{name: brown}}
targets:
  local: {{root: {root}}}
clusters:
  - name: train
    gpu_pools:
      - {{name: cpu, accelerator: cpu, nodes: {{min: 1, max: 1}}}}
storage:
  - {{name: shared, size_gb: 5, mount_path: /mnt/shared}}
registry:
  name: models
  images: [{{name: iris-server}}]
  models:
    - {{name: iris, version: "1", artifact: models/iris-v1.json}}
{serving}"""
SERVING = """\
serving:
  - name: iris
    paths: {production: {model: "iris:1"}}
"""
VOLUME, REGISTRY, IMAGE, MODEL = ("shared.directory.main", "models.registry.main",
                                  "models.image_repository.iris-server", "models.model_version.iris:1")
NO_HOST_GPUS = {"MLPLAT_LOCAL_GPUS": ""}


class Brownfield:
    """A stack directory whose local root holds a volume and a registry made by hand, as the stack file would."""

    def __init__(self, directory: Path, *, serving: bool = False) -> None:
        self.directory = directory
        self.root = directory / "platform"
        shutil.copytree(STACKS / "models", directory / "models")
        self.stack = directory / "stack.yaml"
        self.stack.write_text(STACK.format(root=json.dumps(str(self.root)), serving=SERVING if serving else ""))
        self.volume = self.root / "volumes" / "shared"
        self.registry = self.root / "registry" / "models"
        self.image = self.registry / "images" / "iris-server"
        self.model = self.registry / "iris" / "1"

    @property
    def ids(self) -> dict[str, str]:
        return {VOLUME: str(self.volume), REGISTRY: str(self.registry), IMAGE: str(self.image), MODEL: str(self.model)}

    def make(self, artifact: str = "iris-v1.json") -> None:
        """The objects by hand; the model version's meta.json as the stack file describes iris:1, its artifact
        copied from `artifact`."""
        desired = Stack(self.stack).lower()[0][MODEL].inputs
        self.volume.mkdir(parents=True)
        (self.volume / "data.txt").write_text("the user's data\n")
        self.image.mkdir(parents=True)
        self.model.mkdir(parents=True)
        shutil.copyfile(self.directory / "models" / artifact, self.model / "model.json")
        meta = {k: desired[k] for k in ("name", "version", "sha256", "framework", "source")}
        (self.model / "meta.json").write_text(json.dumps({**meta, "artifact": "model.json"}))

    def cli(self, *args: str, check: bool = True) -> Any:
        return run_mlplat(*args, "-f", str(self.stack), cwd=self.directory, env=NO_HOST_GPUS, check=check)

    def recorded(self) -> dict[str, str]:
        stack = Stack(self.stack)
        try:
            return {r.address: r.id for r in stack.state.resources().values()}
        finally:
            stack.close()


@pytest.fixture(autouse=True)
def no_host_gpus(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """In-process stacks see a host without GPUs (no nvidia-smi call), as the CLI runs here do."""
    from mlplat_plugins.local.host import detect

    monkeypatch.setenv("MLPLAT_LOCAL_GPUS", "")
    detect.cache_clear()
    yield
    detect.cache_clear()


@pytest.fixture
def brownfield(tmp_path: Path) -> Iterator[Brownfield]:
    field = Brownfield(tmp_path)
    yield field
    if (tmp_path / ".mlplat").exists():
        field.cli("destroy", "--yes", check=False)


def _symlink(link: Path, to: Path) -> Path:
    link.symlink_to(to, target_is_directory=True)
    return link


def one_line(text: str) -> str:
    return " ".join(text.split())


def plan_actions(stack_file: Path) -> dict[str, str]:
    stack = Stack(stack_file)
    try:
        return {c.address: c.action for c in stack.plan().changes}
    finally:
        stack.close()


# -- brownfield adopted ---------------------------------------------------------------------------------------
def test_the_cli_imports_what_was_made_by_hand_and_apply_then_destroy_leave_no_duplicate(
        brownfield: Brownfield) -> None:
    brownfield.make()
    artifact = brownfield.model / "model.json"
    before = artifact.stat()

    for address, id in brownfield.ids.items():
        out = brownfield.cli("import", address, id).stdout
        assert f"imported {address} (id {id})" in one_line(out)
        assert "It matches the stack file" in out

    assert brownfield.recorded() == brownfield.ids
    for path in (brownfield.volume, brownfield.registry, brownfield.image):  # marked as the address's now
        assert (path / ".mlplat-owner").read_text().strip() in brownfield.ids
    actions = plan_actions(brownfield.stack)
    assert {a: actions[a] for a in brownfield.ids} == dict.fromkeys(brownfield.ids, "noop")
    assert actions["train.gpu_pool.cpu"] == "create"  # not imported: apply makes it

    brownfield.cli("apply", "--yes")
    assert sorted(p.name for p in brownfield.root.joinpath("volumes").iterdir()) == ["shared"]
    assert sorted(p.name for p in brownfield.registry.iterdir()) == [".mlplat-owner", "images", "iris"]
    assert sorted(p.name for p in brownfield.model.iterdir()) == ["meta.json", "model.json"]
    assert (artifact.stat().st_ino, artifact.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert (brownfield.volume / "data.txt").read_text() == "the user's data\n"
    assert set(plan_actions(brownfield.stack).values()) == {"noop"}

    brownfield.cli("destroy", "--yes")
    for path in (brownfield.volume, brownfield.registry):
        assert not path.exists(), f"destroy left {path}"


def test_import_through_the_api_shows_the_fields_that_differ_and_apply_converges(brownfield: Brownfield) -> None:
    brownfield.make(artifact="iris-v2.json")  # iris:1's folder holds another model's bytes

    assert Stack(brownfield.stack).import_resource(REGISTRY, str(brownfield.registry)).action == "noop"
    change = Stack(brownfield.stack).import_resource(MODEL, str(brownfield.model))
    assert (change.action, change.changed) == ("update", ["sha256"])
    elsewhere = brownfield.directory / "old-volume"  # a volume where the stack file does not put it
    elsewhere.mkdir()
    change = Stack(brownfield.stack).import_resource(VOLUME, str(elsewhere))
    assert (change.action, change.changed, change.forces_replacement) == ("replace", ["path"], ["path"])

    stack = Stack(brownfield.stack)
    stack.apply(stack.plan())
    assert (brownfield.model / "model.json").read_bytes() == (brownfield.directory / "models/iris-v1.json").read_bytes()
    assert not elsewhere.exists() and brownfield.volume.is_dir()  # replaced: the adopted folder was mlplat's
    assert set(plan_actions(brownfield.stack).values()) == {"noop"}


def test_the_cli_shows_the_next_plans_diff_when_the_object_differs(brownfield: Brownfield) -> None:
    brownfield.make(artifact="iris-v2.json")
    brownfield.cli("import", REGISTRY, str(brownfield.registry))

    out = one_line(brownfield.cli("import", MODEL, str(brownfield.model)).stdout)

    assert "The next apply changes it to match the stack file" in out
    assert MODEL in out and "sha256" in out


# -- refused ---------------------------------------------------------------------------------------------------
def test_a_directory_that_is_not_a_registry_is_refused_by_the_cli_naming_the_address(brownfield: Brownfield) -> None:
    brownfield.make()

    result = brownfield.cli("import", REGISTRY, str(brownfield.volume), check=False)

    out = one_line(result.stdout + result.stderr)
    assert result.returncode == 1, out
    assert f"{REGISTRY}: {brownfield.volume} is not a local registry: it holds the file data.txt" in out
    assert "Traceback" not in out
    assert not (brownfield.volume / ".mlplat-owner").exists()  # refused before anything is marked
    assert brownfield.recorded() == {}


@pytest.mark.parametrize(("address", "make_id", "message"), [
    (MODEL, lambda b: b.registry, "is not a local model version: it has no meta.json"),
    (MODEL, lambda b: b.volume / "data.txt", "is not a directory, so not a local model version"),
    (IMAGE, lambda b: b.volume, "is not a local image repository: it holds data.txt and no oci-layout file"),
    (REGISTRY, lambda b: b.model.parent, "is not a local registry: it holds the file 1/meta.json where a <version>"),
    (REGISTRY, lambda b: b.root / "registry", "models/images is not a model version, it has no meta.json"),
    (VOLUME, lambda b: b.volume / "data.txt", "is not a directory, so not a local volume directory"),
    (VOLUME, lambda b: "platform/volumes/shared", "is not an absolute, normalized path"),
    (VOLUME, lambda b: b.directory, "holds the local target's root"),
    (VOLUME, lambda b: _symlink(b.directory / "link", b.volume), "is a symbolic link"),
], ids=["model-no-meta", "model-file", "image-files", "registry-a-model-folder", "registry-a-level-up",
        "volume-file", "relative", "stack-dir", "symlink"])
def test_an_id_that_is_not_of_the_kind_is_refused(brownfield: Brownfield, address: str, make_id: Any,
                                                  message: str) -> None:
    brownfield.make()
    id = str(make_id(brownfield))

    with pytest.raises(ProviderError, match=f"^{address}: ") as err:
        Stack(brownfield.stack).import_resource(address, id)

    assert message in str(err.value)
    assert brownfield.recorded() == {}


def test_a_missing_object_and_one_that_another_address_owns_are_refused(brownfield: Brownfield) -> None:
    brownfield.make()
    with pytest.raises(PlanError, match=f"{VOLUME}: target 'local' has no local.directory with id"):
        Stack(brownfield.stack).import_resource(VOLUME, str(brownfield.root / "volumes" / "nothing"))

    Stack(brownfield.stack).import_resource(REGISTRY, str(brownfield.registry))
    (brownfield.volume / ".mlplat-owner").write_text("other.directory.main\n")
    with pytest.raises(ProviderError, match=f"{VOLUME}: .* belongs to other.directory.main"):
        Stack(brownfield.stack).import_resource(VOLUME, str(brownfield.volume))
    with pytest.raises(PlanError, match=f"{brownfield.registry} is already managed as {REGISTRY}"):
        Stack(brownfield.stack).import_resource(IMAGE, str(brownfield.registry))


def test_servers_and_pools_mlplat_made_are_imported_back_and_nothing_else(tmp_path: Path) -> None:
    field = Brownfield(tmp_path, serving=True)
    field.cli("apply", "--yes")
    try:
        ids = field.recorded()
        router, server, pool = "iris.router.main", "iris.model_server.production", "train.gpu_pool.cpu"
        for address in (router, server, pool):
            field.cli("state", "rm", address)

        result = field.cli("import", router, ids[server], check=False)  # a model server's run directory
        out = one_line(result.stdout + result.stderr)
        assert result.returncode == 1, out
        assert f"{router}: {ids[server]} is the run directory of a model_server, not of a local router" in out
        assert "Traceback" not in out
        by_hand = tmp_path / "by-hand"  # what a process started by hand would have: no runtime file
        by_hand.mkdir()
        with pytest.raises(ProviderError, match=f"{router}: .* is not a local router's run directory: it has no"):
            Stack(field.stack).import_resource(router, str(by_hand))
        shutil.copyfile(Path(ids[router]) / "runtime.json", by_hand / "runtime.json")  # the live router's
        with pytest.raises(ProviderError, match="was started with another run directory"):
            Stack(field.stack).import_resource(router, str(by_hand))
        with pytest.raises(ProviderError, match=f"{pool}: 'elsewhere/{pool}' is not a GPU pool of this machine"):
            Stack(field.stack).import_resource(pool, f"elsewhere/{pool}")

        for address in (server, router, pool):  # the server first: the router's routes name its url
            out = field.cli("import", address, ids[address]).stdout
            assert "It matches the stack file" in out, out
        assert field.recorded() == ids
        assert set(plan_actions(field.stack).values()) == {"noop"}
    finally:
        field.cli("destroy", "--yes", check=False)
    assert not (field.root / "serving").exists()


def test_a_kind_marked_not_importable_is_refused(brownfield: Brownfield, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlplat_plugins.local.storage import DirectoryProvider

    brownfield.make()
    monkeypatch.setattr(DirectoryProvider, "importable", False)
    with pytest.raises(PlanError, match=f"{VOLUME}: a local.directory cannot be imported"):
        Stack(brownfield.stack).import_resource(VOLUME, str(brownfield.volume))
    assert not (brownfield.volume / ".mlplat-owner").exists()


# -- discovery -------------------------------------------------------------------------------------------------
def test_the_hosts_gpus_are_recorded_in_a_saved_plan_and_a_changed_host_refuses_it(tmp_path: Path) -> None:
    field = Brownfield(tmp_path)
    on_gpu_host = {"MLPLAT_LOCAL_GPUS": "NVIDIA L4,NVIDIA L4"}
    shown = run_mlplat("preview", "-f", "stack.yaml", "-o", "plan.json", cwd=tmp_path, env=on_gpu_host)
    assert 'discovered on target local: gpus=["NVIDIA L4", "NVIDIA L4"]' in shown.stdout
    assert json.loads((tmp_path / "plan.json").read_text())["discovery"] == {
        "local": {"gpus": ["NVIDIA L4", "NVIDIA L4"]}}

    refused = run_mlplat("apply", "plan.json", cwd=tmp_path, env=NO_HOST_GPUS, check=False)

    out = one_line(refused.stdout + refused.stderr)
    assert refused.returncode == 1, out
    assert "the plan was made against a target that has changed since" in out
    assert "target 'local': gpus was [\"NVIDIA L4\", \"NVIDIA L4\"], now []" in out
    assert "Traceback" not in out
    assert not field.root.exists()  # nothing was applied

    run_mlplat("apply", "plan.json", cwd=tmp_path, env=on_gpu_host)  # the same host: applied as planned
    assert field.volume.is_dir()
    run_mlplat("destroy", "--yes", "-f", "stack.yaml", cwd=tmp_path, env=on_gpu_host)


def test_discovery_names_the_gpus_detect_reports(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from mlplat_plugins.local.host import detect

    field = Brownfield(tmp_path)
    monkeypatch.setenv("MLPLAT_LOCAL_GPUS", "NVIDIA H100 80GB HBM3")
    detect.cache_clear()
    assert Stack(field.stack).discovery() == {"local": {"gpus": ["NVIDIA H100 80GB HBM3"]}}
