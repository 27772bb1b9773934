"""Model formats on the local target (plugins/local/runtime/formats.py): ONNX and skops models served end to end by
real model servers behind a real router, pickles refused at validate (at the artifact's line) and by the model
server, a missing runtime reported at validate with the pip line, and MLflow models judged by their MLmodel.

Fixtures: tests/fixtures/models (make_models.py writes them): an iris LogisticRegression as iris.onnx and
iris.skops, trained with the class names as labels, and iris.pkl, a pickle. MLflow is in the test extra: its model
loading is tested for real (its refusals need no MLflow).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlplat_plugins.local.runtime import formats
from provisioner.errors import SpecError
from provisioner.spec.loader import format_loc

from conftest import require_module, run_mlplat
from local_processes import kill_all

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "models"
CLASSES = ["setosa", "versicolor", "virginica"]
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
#: one iris row of each class (rows 0, 50 and 100 of scikit-learn's copy), in class order
ROWS = [[5.1, 3.5, 1.4, 0.2], [7.0, 3.2, 4.7, 1.4], [6.3, 3.3, 6.0, 2.5]]

STACK = """\
apiVersion: mlplat/v1
metadata: {{name: formats}}
target: local
registry:
  name: models
  models:
{models}
serving:
{serving}
"""


@pytest.fixture(autouse=True)
def no_host_gpus(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """In-process stacks see a host without GPUs (no nvidia-smi call), as the CLI runs here do."""
    from mlplat_plugins.local.host import detect

    monkeypatch.setenv("MLPLAT_LOCAL_GPUS", "")
    detect.cache_clear()
    yield
    detect.cache_clear()


def write_stack(directory: Path, models: list[tuple[str, str, str]], served: bool = True) -> Path:
    """A stack serving each (version, framework, artifact) of model `iris` at an endpoint `e<version>`, artifacts
    copied from the fixtures (or written by the test) into `directory`/models."""
    (directory / "models").mkdir(exist_ok=True)
    for _, _, artifact in models:
        source = FIXTURES / artifact
        if source.exists() and not (directory / "models" / artifact).exists():
            shutil.copy(source, directory / "models" / artifact)
    lines = [f'    - {{name: iris, version: "{v}", framework: {fw}, artifact: models/{a}}}' for v, fw, a in models]
    serving = [f'  - name: e{v}\n    paths: {{production: {{model: "iris:{v}"}}}}' for v, _, _ in models]
    path = directory / "stack.yaml"
    path.write_text(STACK.format(models="\n".join(lines), serving="\n".join(serving) if served else "  []"))
    return path


def position(path: Path, needle: str) -> tuple[int, int]:
    """Line and column (1-based) of the first line of `path` holding `needle`."""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            return number, line.index(needle) + 1
    raise AssertionError(f"{needle!r} is not in {path}")


def post(url: str, instances: Any) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url + "/invocations", data=json.dumps({"instances": instances}).encode(),
                                 method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.fixture
def applied(tmp_path: Path) -> Iterator[Any]:
    """Apply a stack in-process (real processes), destroy it after the test; yields `run(models) -> urls`."""
    from provisioner.api import Stack

    stacks: list[Any] = []

    def run(models: list[tuple[str, str, str]]) -> dict[str, str]:
        stack = Stack(write_stack(tmp_path, models))
        stacks.append(stack)
        stack.apply(stack.plan())
        outputs = stack.outputs()
        return {version: outputs[f"e{version}.url"] for version, _, _ in models}

    try:
        yield run
    finally:
        try:
            for stack in stacks:
                stack.apply(stack.plan(destroy=True))
                stack.close()
        finally:
            kill_all(tmp_path)


def assert_iris_answers(predictions: list[dict[str, Any]]) -> None:
    assert [p["label"] for p in predictions] == CLASSES
    for prediction, label in zip(predictions, CLASSES, strict=True):
        probabilities = prediction["probabilities"]
        assert sorted(probabilities) == CLASSES
        assert abs(sum(probabilities.values()) - 1) < 1e-4
        assert max(probabilities, key=probabilities.get) == label


# -- served end to end -------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_onnx_and_skops_models_are_served_end_to_end(applied: Any) -> None:
    require_module("onnxruntime", "the onnx extra is part of the test extra")
    require_module("skops", "the sklearn extra is part of the test extra")
    urls = applied([("1", "onnx", "iris.onnx"), ("2", "sklearn", "iris.skops")])

    status, onnx = post(urls["1"], ROWS)
    assert status == 200, onnx
    assert onnx["model_id"] == "iris:1"
    assert_iris_answers(onnx["predictions"])
    status, skops = post(urls["2"], ROWS)
    assert status == 200, skops
    assert skops["model_id"] == "iris:2"
    assert_iris_answers(skops["predictions"])
    for a, b in zip(onnx["predictions"], skops["predictions"], strict=True):  # one model, two formats
        assert all(abs(a["probabilities"][c] - b["probabilities"][c]) < 1e-4 for c in CLASSES), (a, b)

    # the ONNX model names its features (metadata): instances may be objects keyed by them
    status, keyed = post(urls["1"], [dict(zip(FEATURES, row, strict=True)) for row in ROWS])
    assert status == 200 and keyed["predictions"] == onnx["predictions"]
    # bad instances are the client's error, and say what is wrong
    status, body = post(urls["1"], [[5.1, 3.5]])
    assert status == 400 and "expected 4 values (sepal_length, sepal_width" in body["error"], body
    status, body = post(urls["2"], [{"sepal_length": 5.1}])  # fitted on a matrix: no feature names
    assert status == 400 and "names no features" in body["error"], body
    status, body = post(urls["2"], [[5.1, 3.5, 1.4, "x"]])
    assert status == 400 and "finite numbers" in body["error"], body


# -- pickles -----------------------------------------------------------------------------------------------------
def test_a_pickle_is_refused_at_validate_at_its_artifact(tmp_path: Path) -> None:
    """By its name (iris.pkl) or by its bytes (a pickle named .onnx), whatever the framework says."""
    (tmp_path / "models").mkdir()
    shutil.copy(FIXTURES / "iris.pkl", tmp_path / "models" / "disguised.onnx")
    path = write_stack(tmp_path, [("1", "sklearn", "iris.pkl"), ("2", "onnx", "disguised.onnx")])
    from provisioner.api import Stack

    stack = Stack(path)
    try:
        found = [(loc, r.code) for loc, _, r in stack.check_capabilities() if r.severity == "error"]
        assert found == [(("registry", "models", 0, "artifact"), "model-artifact-pickle"),
                         (("registry", "models", 1, "artifact"), "model-artifact-pickle")]
        with pytest.raises(SpecError) as err:
            stack.validate()
    finally:
        stack.close()
    for i, artifact in enumerate(("models/iris.pkl", "models/disguised.onnx")):
        line, col = position(path, f"artifact: {artifact}")
        where = f"{path}:{line}:{col}: {format_loc(('registry', 'models', i, 'artifact'))}: model iris:{i + 1}: "
        assert where + f"model artifact {tmp_path / artifact} is a Python pickle (its first bytes are a protocol 4 " \
            "pickle header)" in str(err.value), str(err.value)

    proc = run_mlplat("validate", "-f", "stack.yaml", cwd=tmp_path, check=False)  # the CLI says the same
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "is a Python pickle" in proc.stdout + proc.stderr and "Traceback" not in proc.stdout + proc.stderr


def test_an_artifact_not_of_its_framework_fails_validate_not_half_way_through_apply(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    shutil.copy(REPO / "stacks" / "models" / "iris-v1.json", tmp_path / "models" / "iris-v1.json")
    path = write_stack(tmp_path, [("1", "sklearn", "iris-v1.json"), ("2", "onnx", "iris.skops"),
                                  ("3", "mlflow", "iris.onnx"), ("4", "onnx", "iris.onnx")])
    from provisioner.api import Stack

    stack = Stack(path)
    try:
        found = [(loc, r.code, r.message) for loc, _, r in stack.check_capabilities()
                 if r.code != "model-runtime-missing"]  # MLflow's, where it is not installed
    finally:
        stack.close()
    assert [(loc[-2:], code) for loc, code, _ in found] == [((0, "artifact"), "model-artifact-invalid"),
                                                           ((1, "artifact"), "model-artifact-invalid"),
                                                           ((2, "artifact"), "model-artifact-invalid")]
    assert "iris-v1.json is not a skops file" in found[0][2]
    assert "iris.skops is not an ONNX model" in found[1][2]
    assert "an MLflow model is a directory with an MLmodel file, or a .zip of one" in found[2][2]


@pytest.mark.parametrize("framework", sorted(formats.FORMATS))
def test_the_model_server_refuses_a_pickle_whatever_its_framework(tmp_path: Path, framework: str) -> None:
    artifact = tmp_path / "model.bin"  # no telling name: the bytes give it away
    shutil.copy(FIXTURES / "iris.pkl", artifact)
    proc = subprocess.run(
        [sys.executable, "-m", "mlplat_plugins.local.runtime.model_server", "--artifact", str(artifact),
         "--framework", framework, "--runtime-file", str(tmp_path / "runtime.json"), "--port", "0"],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert f"model artifact {artifact} is a Python pickle" in proc.stderr, proc.stderr
    assert not (tmp_path / "runtime.json").exists()  # it never served


def test_a_pickle_name_is_refused_even_before_its_bytes_are_read(tmp_path: Path) -> None:
    artifact = tmp_path / "model.joblib"
    artifact.write_bytes(b"x\x9c compressed, not read")
    with pytest.raises(formats.ModelError, match=r"model\.joblib is a Python pickle \(its name ends in \.joblib\)"):
        formats.load(artifact, "sklearn")
    assert formats.pickle_problem(FIXTURES / "iris.onnx") is None
    assert formats.pickle_problem(FIXTURES / "iris.skops") is None


# -- missing runtimes --------------------------------------------------------------------------------------------
def hide_modules(monkeypatch: pytest.MonkeyPatch, *hidden: str) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> Any:
        return None if name.split(".")[0] in hidden else real(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_a_missing_runtime_is_reported_at_validate_with_the_pip_line(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_stack(tmp_path, [("1", "onnx", "iris.onnx"), ("2", "sklearn", "iris.skops")])
    hide_modules(monkeypatch, "onnxruntime", "skops")
    from provisioner.api import Stack

    stack = Stack(path)
    try:
        found = [(loc, r.code) for loc, _, r in stack.check_capabilities() if r.severity == "error"]
        assert found == [(("registry", "models", 0, "framework"), "model-runtime-missing"),
                         (("registry", "models", 1, "framework"), "model-runtime-missing")]
        with pytest.raises(SpecError) as err:
            stack.validate()
    finally:
        stack.close()
    text = str(err.value)
    for i, (framework, module) in enumerate((("onnx", "onnxruntime"), ("sklearn", "skops"))):
        line, col = position(path, f"framework: {framework}")
        assert f"{path}:{line}:{col}: registry.models[{i}].framework: " in text, text
        assert f"with {module}, which is not installed: pip install 'mlplat[{framework}]'" in text, text
    with pytest.raises(formats.FormatUnavailable, match=r"pip install 'mlplat\[onnx\]'"):
        formats.load(FIXTURES / "iris.onnx", "onnx")  # and the model server, should it get that far


def test_validate_and_help_import_no_model_runtime(tmp_path: Path) -> None:
    write_stack(tmp_path, [("1", "onnx", "iris.onnx"), ("2", "sklearn", "iris.skops")])
    runtimes = ("numpy", "onnxruntime", "onnx", "skops", "sklearn", "mlflow", "pandas")
    code = (
        "import sys\nfrom provisioner import cli\n"
        "for args in (['--help'], ['validate', '-f', 'stack.yaml']):\n"
        "    sys.argv = ['mlplat', *args]\n"
        "    try:\n        cli.main()\n    except SystemExit as exit:\n        assert not exit.code, args\n"
        f"print('LOADED', sorted(m for m in {runtimes!r} if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "LOADED []" in proc.stdout, proc.stdout[-2000:]


def test_an_unknown_framework_served_on_local_is_a_validate_error(tmp_path: Path) -> None:
    path = write_stack(tmp_path, [("1", "xgboost", "iris.onnx")])
    from provisioner.api import Stack

    stack = Stack(path)
    try:
        assert "onnx" in stack.targets["local"].capabilities().model_formats
        found = [(loc, r.code) for loc, _, r in stack.check_capabilities() if r.severity == "error"]
        assert found == [(("serving", 0, "paths", "production", "model"), "model-format-unsupported")]
    finally:
        stack.close()


# -- skops: trusted types only -----------------------------------------------------------------------------------
def test_a_skops_file_naming_a_type_outside_the_allow_list_is_refused(tmp_path: Path) -> None:
    import operator

    skops_io = require_module("skops.io", "the sklearn extra is part of the test extra")
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    iris = load_iris()
    labels = iris.target_names[iris.target]
    unsafe = make_pipeline(FunctionTransformer(operator.neg), LogisticRegression(max_iter=1000)).fit(iris.data, labels)
    skops_io.dump(unsafe, tmp_path / "unsafe.skops")
    with pytest.raises(formats.ModelError, match=r"unsafe\.skops names types mlplat does not trust: _operator\.neg"):
        formats.load(tmp_path / "unsafe.skops", "sklearn")

    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(iris.data, labels)  # names sklearn's Tree
    skops_io.dump(forest, tmp_path / "forest.skops")
    assert [p["label"] for p in formats.load(tmp_path / "forest.skops", "sklearn").predict(ROWS)] == CLASSES


@pytest.mark.parametrize(("name", "trusted"), [
    ("sklearn.tree._tree.Tree", True),
    ("numpy.float64", True),
    ("scipy.sparse._csr.csr_matrix", True),
    ("builtins.eval", False),
    ("posix.system", False),
    ("_operator.attrgetter", False),
    ("numpy.load", False),  # a function, not a class
    ("numpy.ndarray.tofile", False),
    ("numpy.testing._private.utils.runstring", False),
    ("sklearn.utils._testing.TempMemmap", False),
    ("sklearn.no_such_module.Thing", False),
    ("sklearnx.Thing", False),
])
def test_which_types_a_skops_file_may_name(name: str, trusted: bool) -> None:
    require_module("sklearn", "the sklearn extra is part of the test extra")
    require_module("scipy", "scikit-learn needs it")
    assert formats.safe_type(name) is trusted


# -- mlflow ------------------------------------------------------------------------------------------------------
ONNX_MLMODEL = {"flavors": {
    "onnx": {"code": None, "data": "model.onnx", "providers": ["CPUExecutionProvider"]},
    "python_function": {"data": "model.onnx", "loader_module": "mlflow.onnx"}}}


def sklearn_mlmodel(serialization: str, data: str) -> dict[str, Any]:
    return {"flavors": {
        "python_function": {"loader_module": "mlflow.sklearn", "model_path": data, "predict_fn": "predict"},
        "sklearn": {"code": None, "pickled_model": data, "serialization_format": serialization}}}


def mlflow_dir(directory: Path, mlmodel: dict[str, Any], files: dict[str, Path]) -> Path:
    import yaml

    directory.mkdir(parents=True)
    (directory / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    for name, source in files.items():
        shutil.copy(source, directory / name)
    return directory


def zipped(directory: Path) -> Path:
    archive = directory.with_suffix(".zip")
    with zipfile.ZipFile(archive, "w") as out:
        for file in sorted(directory.rglob("*")):
            out.write(file, f"{directory.name}/{file.relative_to(directory)}")
    return archive


@pytest.mark.parametrize(("mlmodel", "code", "says"), [
    (sklearn_mlmodel("cloudpickle", "model.pkl"), "model-artifact-pickle", "sklearn flavor is saved as cloudpickle"),
    (sklearn_mlmodel("pickle", "model.pkl"), "model-artifact-pickle", "sklearn flavor is saved as pickle"),
    ({"flavors": {"python_function": {"loader_module": "mlflow.pyfunc.model", "python_model": "python_model.pkl",
                                      "cloudpickle_version": "3.1.1"}}},
     "model-artifact-pickle", "python_model, which MLflow stores with cloudpickle"),
    ({"flavors": {"python_function": {"loader_module": "mlflow.pyfunc.model", "model_code_path": "m.py"}}},
     "model-artifact-unsafe", "an MLflow model from code"),
    ({"flavors": {**ONNX_MLMODEL["flavors"], "python_function": {
        **ONNX_MLMODEL["flavors"]["python_function"], "code": "code"}}}, "model-artifact-unsafe", "code paths"),
    ({"flavors": {"python_function": {"loader_module": "mlflow.pytorch"}}}, "model-artifact-unsafe",
     "loader_module is 'mlflow.pytorch'"),
    ({"flavors": {**ONNX_MLMODEL["flavors"], "onnx": {
        "data": "model.onnx", "providers": [["TensorrtExecutionProvider", {"trt_extra_plugin_lib_paths": "x.so"}]]}}},
     "model-artifact-unsafe", "providers with options"),
    ({"flavors": {"sklearn": {"serialization_format": "skops"}}}, "model-artifact-unsafe", "no python_function"),
])
def test_an_mlflow_model_that_would_unpickle_or_run_code_is_refused(tmp_path: Path, mlmodel: dict[str, Any],
                                                                     code: str, says: str) -> None:
    """From its MLmodel alone, with or without MLflow installed: by the model server and at validate."""
    directory = mlflow_dir(tmp_path / "model", mlmodel, {})
    with pytest.raises(formats.ModelError, match=rf"model artifact {directory}: .*{says}"):
        formats.load(directory, "mlflow")
    archive = zipped(directory)
    found = formats.artifact_problem(archive, "mlflow")
    assert found is not None and found[0] == code and says in found[1], found


def test_an_mlflow_model_pickled_in_a_zip_is_refused_at_validate(tmp_path: Path) -> None:
    archive = zipped(mlflow_dir(tmp_path / "models" / "pickled", sklearn_mlmodel("cloudpickle", "model.pkl"),
                                {"model.pkl": FIXTURES / "iris.pkl"}))
    path = write_stack(tmp_path, [("1", "mlflow", archive.name)])
    from provisioner.api import Stack

    stack = Stack(path)
    try:
        with pytest.raises(SpecError) as err:
            stack.validate()
    finally:
        stack.close()
    line, col = position(path, f"artifact: models/{archive.name}")
    assert f"{path}:{line}:{col}: registry.models[0].artifact: model iris:1: model artifact" in str(err.value)
    assert "saved as cloudpickle" in str(err.value)


def test_an_acceptable_mlflow_model_without_mlflow_names_the_extra(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    directory = mlflow_dir(tmp_path / "model", ONNX_MLMODEL, {"model.onnx": FIXTURES / "iris.onnx"})
    hide_modules(monkeypatch, "mlflow")
    assert formats.artifact_problem(directory, "mlflow") is None
    with pytest.raises(formats.FormatUnavailable, match=r"needs mlflow.*pip install 'mlplat\[mlflow\]'"):
        formats.load(directory, "mlflow")
    assert formats.missing_runtime("mlflow")[0] == "mlflow"


def test_a_zip_reaching_outside_its_model_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("MLmodel", json.dumps(ONNX_MLMODEL))
        out.writestr("../escape.txt", "x")
    with pytest.raises(formats.ModelError, match="a path outside the model or a symlink"):
        formats.load(archive, "mlflow")
    assert not (tmp_path.parent / "escape.txt").exists()


@pytest.mark.slow
def test_mlflow_onnx_and_skops_models_are_served_from_zips(applied: Any, tmp_path: Path) -> None:
    """MLflow is in the test extra: its absence is a failure here, not a skip."""
    import mlflow.onnx
    import mlflow.sklearn
    import onnx
    import skops.io

    models = tmp_path / "models"
    models.mkdir()
    mlflow.onnx.save_model(onnx.load(FIXTURES / "iris.onnx"), models / "onnx")
    estimator = skops.io.load(FIXTURES / "iris.skops", trusted=skops.io.get_untrusted_types(file=FIXTURES /
                                                                                            "iris.skops"))
    mlflow.sklearn.save_model(estimator, models / "sklearn", serialization_format="skops")
    for name in ("onnx", "sklearn"):
        shutil.make_archive(str(models / name), "zip", root_dir=models, base_dir=name)
        shutil.rmtree(models / name)
    urls = applied([("1", "mlflow", "onnx.zip"), ("2", "mlflow", "sklearn.zip")])
    for url in urls.values():
        status, body = post(url, ROWS)
        assert status == 200, body
        assert_iris_answers(body["predictions"])


def test_an_mlflow_skops_model_is_held_to_the_same_allow_list(tmp_path: Path) -> None:
    """The types MLmodel lists as trusted are checked too (MLflow would trust them); a directory and its MLmodel
    file load as the zip does."""
    import mlflow  # noqa: F401 - in the test extra: its absence is a failure, not a skip
    import yaml

    good = sklearn_mlmodel("skops", "model.skops")
    directory = mlflow_dir(tmp_path / "good", good, {"model.skops": FIXTURES / "iris.skops"})
    for artifact in (directory, directory / "MLmodel"):
        assert [p["label"] for p in formats.load(artifact, "mlflow").predict(ROWS)] == CLASSES
    bad = yaml.safe_load(yaml.safe_dump(good))
    bad["flavors"]["sklearn"]["skops_trusted_types"] = ["builtins.eval", "sklearn.tree._tree.Tree"]
    directory = mlflow_dir(tmp_path / "bad", bad, {"model.skops": FIXTURES / "iris.skops"})
    with pytest.raises(formats.ModelError, match=rf"model artifact {directory} \(model\.skops, with the types MLmodel "
                                                 r"trusts\) names types mlplat does not trust: builtins\.eval \("):
        formats.load(directory, "mlflow")
