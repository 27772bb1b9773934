"""Model formats the local model server loads, by the registry's `framework:` name.

    predictor = load(Path("models/iris-v1.json"), "mlplat-linear")
    predictor.model_id          # "iris:1" where the artifact names itself, else None
    predictor.predict([[5.1, 3.5, 1.4, 0.2]])  # -> list of {"label": ..., "probabilities": {...}} (or values)

`predict` raises ModelError (a ValueError) on bad input; `load` raises ModelError naming the artifact on a bad
artifact, and FormatUnavailable (with the pip line) when the format's runtime is not installed.

Formats (each runtime but mlplat-linear's is an optional extra, imported here inside `load` only, so that nothing
the CLI imports pulls it in; `missing_runtime` tells validate without importing it):

- ``mlplat-linear`` — the JSON format of `model.py` (built in).
- ``onnx`` (``mlplat[onnx]``) — one ONNX file, run by onnxruntime on the CPU. The model has one input, a float or
  double matrix [rows, features]; instances are lists of numbers, or objects keyed by feature name where the
  model's metadata names them (``features``: a JSON list, as tests/fixtures/models/make_models.py writes it). A
  classifier as skl2onnx exports it (a label output, then a probability output: a [rows, classes] tensor, or the
  list of maps ZipMap gives) answers ``{"label", "probabilities"}`` like mlplat-linear; the class names come from
  the metadata's ``classes`` (a JSON list), else from the graph's classifier node (read with the ``onnx`` package
  the extra installs), else they are the indexes. Any other model answers its outputs per instance: the one
  output's row, or ``{output name: row}``. External data files are refused (the model is read from its bytes:
  the registry holds one file).
- ``sklearn`` (``mlplat[sklearn]``) — an estimator saved with ``skops.io.dump``. Loaded only when every type it
  names that skops does not trust by default is a class of scikit-learn, NumPy or SciPy (`safe_type`); anything
  else (a function such as ``builtins.eval``, a class of another package) refuses the file. Classifiers
  (``classes_`` and ``predict_proba``) answer ``{"label", "probabilities"}``, other estimators their prediction.
- ``mlflow`` (``mlplat[mlflow]``, MLflow >= 3.9) — an MLflow model: its directory, its ``MLmodel`` file, or a
  ``.zip`` of the directory (what a registry can hold: it copies one file), loaded with
  ``mlflow.pyfunc.load_model``. MLmodel is read first and only two pickle-free flavors are accepted (`mlflow_problem`):
  ``python_function`` with ``loader_module: mlflow.onnx`` (providers by name only, no extra session config), and
  ``loader_module: mlflow.sklearn`` with the sklearn flavor's ``serialization_format: skops`` (its types checked as
  for ``sklearn``, and so are any ``skops_trusted_types`` MLmodel lists). Refused: a ``python_model`` (cloudpickle),
  models from code, ``code:`` paths (put on sys.path before the loader is imported), sklearn pickle/cloudpickle,
  every other loader. Answers as the onnx and sklearn formats do.

Whatever the framework, a pickle (first bytes 0x80 then a protocol byte, or a .pkl/.pickle/.joblib name) is refused
before anything reads it (`pickle_problem`): unpickling an untrusted file runs the code it names.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import math
import os
import shutil
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from .model import ModelError
from .model import load as load_linear

#: framework name → the extra that installs its runtime (None: built in)
FORMATS: dict[str, str | None] = {"mlplat-linear": None, "onnx": "onnx", "sklearn": "sklearn", "mlflow": "mlflow"}
#: framework name → the modules its runtime needs (found, never imported, by `missing_runtime`)
RUNTIME_MODULES: dict[str, tuple[str, ...]] = {
    "mlplat-linear": (),
    "onnx": ("onnxruntime", "numpy"),
    "sklearn": ("skops", "sklearn", "numpy"),
    "mlflow": ("mlflow", "pandas", "numpy"),
}
#: names a pickle goes by (joblib's files are pickles too)
PICKLE_SUFFIXES = frozenset({".pkl", ".pickle", ".joblib"})
#: packages whose classes a skops file may name beyond skops' defaults
SAFE_PACKAGES = frozenset({"sklearn", "numpy", "scipy"})
#: module path parts never trusted even there: test helpers, build tools, file access
UNSAFE_PARTS = frozenset({"testing", "_testing", "tests", "conftest", "f2py", "distutils", "_datasource"})
#: how an ONNX file starts: the tag of one of ModelProto's fields (in practice 0x08, ir_version, field 1)
ONNX_FIRST_BYTES = frozenset({0x08, 0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72, 0xA2, 0xCA, 0xD2})
#: MLflow pyfunc loaders that unpickle nothing (what else `mlflow_problem` requires of each: see the module doc)
MLFLOW_LOADERS = ("mlflow.onnx", "mlflow.sklearn")


class FormatUnavailable(ModelError):
    """The format's runtime is not installed."""


class Predictor(Protocol):
    model_id: str | None

    def predict(self, instances: Sequence[Any]) -> list[Any]: ...


# -- what validate asks (no runtime imported) ------------------------------------------------------------------
def install_line(framework: str) -> str:
    """What installs `framework`'s runtime."""
    return f"pip install 'mlplat[{FORMATS.get(framework) or framework}]'"


def missing_runtime(framework: str) -> list[str]:
    """The modules `framework` needs that are not installed (found with find_spec, never imported); [] for a
    built-in or unknown framework."""
    return [module for module in RUNTIME_MODULES.get(framework, ()) if _absent(module)]


def _absent(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except (ImportError, ValueError):  # a parent package missing, a module set to None in sys.modules
        return True


def pickle_problem(path: Path) -> str | None:
    """Why `path` is taken for a pickle (its first bytes, or its name), or None. A directory is not one."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(2)
    except (IsADirectoryError, FileNotFoundError):
        head = b""
    if len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return f"its first bytes are a protocol {head[1]} pickle header"
    suffix = next((s for s in path.suffixes if s.lower() in PICKLE_SUFFIXES), None)
    if suffix is not None and not path.is_dir():
        return f"its name ends in {suffix}"
    return None


def pickle_refusal(path: Path, why: str) -> str:
    return (f"model artifact {path} is a Python pickle ({why}); mlplat does not load pickles: unpickling a file runs "
            "the code it names. Export the model to ONNX (framework: onnx) or save it with skops.io.dump "
            "(framework: sklearn)")


def artifact_problem(path: Path, framework: str) -> tuple[str, str] | None:
    """What validate refuses in an artifact, as (code, message naming it): a pickle ("model-artifact-pickle"),
    an MLflow model whose flavor unpickles ("model-artifact-pickle") or runs code ("model-artifact-unsafe"), a file
    that is not of its framework at first sight ("model-artifact-invalid": an onnx file that does not start as a
    protobuf ModelProto, a sklearn file that is no zip, an MLflow model without MLmodel). Reads first bytes and an
    MLflow model's MLmodel; imports no runtime. Anything else wrong is the model server's to report."""
    path = Path(path)
    why = pickle_problem(path)
    if why is not None:
        return "model-artifact-pickle", pickle_refusal(path, why)
    try:
        if framework == "mlflow":
            with _mlflow_model(path, extract=False) as (_, mlmodel):
                found = mlflow_problem(mlmodel)
            return None if found is None else (found[0], f"model artifact {path}: {found[1]}")
        if framework == "onnx":
            with open(path, "rb") as fh:
                head = fh.read(1)
            if not head or head[0] not in ONNX_FIRST_BYTES:
                return "model-artifact-invalid", (f"model artifact {path} is not an ONNX model (it does not start "
                                                  "as a protobuf ModelProto does)")
        if framework == "sklearn" and not zipfile.is_zipfile(path):
            return "model-artifact-invalid", (f"model artifact {path} is not a skops file (the zip archive "
                                              "skops.io.dump writes)")
    except ModelError as err:
        return "model-artifact-invalid", str(err)
    except OSError:
        return None
    return None


# -- load --------------------------------------------------------------------------------------------------------
def load(path: Path, framework: str) -> Predictor:
    path = Path(path)
    if framework not in FORMATS:
        raise ModelError(f"model artifact {path}: unknown model framework {framework!r} (known: "
                         f"{', '.join(sorted(FORMATS))})")
    why = pickle_problem(path)
    if why is not None:
        raise ModelError(pickle_refusal(path, why))
    if framework == "mlplat-linear":
        return load_linear(path)
    if framework == "mlflow":  # MLmodel is judged before the runtime is looked for: a refusal needs none
        return _load_mlflow(path)
    _require(framework, path)
    if framework == "onnx":
        return OnnxPredictor(path)
    return SklearnPredictor(path)


def _require(framework: str, path: Path, modules: Sequence[str] = ()) -> None:
    """FormatUnavailable unless `framework`'s runtime, and `modules`, are installed."""
    missing = missing_runtime(framework)
    missing += [m for m in modules if m not in missing and _absent(m)]
    if missing:
        raise FormatUnavailable(f"model artifact {path}: the {framework} format needs {', '.join(missing)}, not "
                                f"installed: {install_line(framework)}")


# -- instances -> a matrix ---------------------------------------------------------------------------------------
def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _rows(instances: Any, features: Sequence[str] | None, width: int | None) -> list[list[float]]:
    """Instances (lists of numbers in feature order, or objects keyed by feature name) as rows of floats."""
    if isinstance(instances, (str, bytes)) or not isinstance(instances, Sequence):
        raise ModelError("instances must be a list")
    expected = len(features) if features else width
    rows: list[list[float]] = []
    for index, instance in enumerate(instances):
        if isinstance(instance, Mapping):
            if not features:
                raise ModelError(f"instance {index}: this model names no features: send a list of "
                                 f"{expected or 'the'} numbers")
            missing = [f for f in features if f not in instance]
            if missing:
                raise ModelError(f"instance {index}: missing feature(s) {', '.join(missing)}")
            values = [instance[f] for f in features]
        elif isinstance(instance, Sequence) and not isinstance(instance, (str, bytes)):
            values = list(instance)
            if expected is not None and len(values) != expected:
                named = f" ({', '.join(features)})" if features else ""
                raise ModelError(f"instance {index}: expected {expected} values{named}, got {len(values)}")
            if expected is None and rows and len(values) != len(rows[0]):
                raise ModelError(f"instance {index}: {len(values)} values, instance 0 has {len(rows[0])}")
        else:
            raise ModelError(f"instance {index}: expected a list of {expected or ''} numbers".replace("of  ", "of "))
        if not all(_is_number(v) for v in values):
            raise ModelError(f"instance {index}: all values must be finite numbers")
        rows.append([float(v) for v in values])
    return rows


def _names(value: Any) -> list[str] | None:
    """A JSON list of names from model metadata, or None."""
    try:
        names = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return None
    if isinstance(names, list) and names and all(isinstance(n, (str, int)) for n in names):
        return [str(n) for n in names]
    return None


def _plain(value: Any) -> Any:
    """A numpy value (array, scalar) as JSON-able Python."""
    return value.tolist() if hasattr(value, "tolist") else value


def _classified(labels: Any, probabilities: Any, classes: Sequence[str] | None) -> list[dict[str, Any]]:
    """{"label", "probabilities"} per row, as mlplat-linear answers. `probabilities`: a [rows, classes] array or
    a list of {class: probability} maps (ZipMap)."""
    answers = []
    for label, row in zip(_plain(labels), _plain(probabilities), strict=True):
        if isinstance(row, Mapping):
            probs = {str(c): round(float(p), 6) for c, p in row.items()}
        else:
            keys = classes if classes is not None and len(classes) == len(row) else [str(i) for i in range(len(row))]
            probs = {k: round(float(p), 6) for k, p in zip(keys, row, strict=True)}
        answers.append({"label": label, "probabilities": probs})
    return answers


def _per_instance(outputs: Mapping[str, Any], count: int) -> list[Any]:
    """Raw outputs split by instance: the one output's row, or {output name: row}."""
    split = {}
    for name, value in outputs.items():
        value = _plain(value)
        split[name] = value if isinstance(value, list) and len(value) == count else [value] * count
    if len(split) == 1:
        return next(iter(split.values()))
    return [{name: rows[i] for name, rows in split.items()} for i in range(count)]


# -- onnx --------------------------------------------------------------------------------------------------------
_ONNX_DTYPES = {"tensor(float)": "float32", "tensor(double)": "float64"}


class OnnxPredictor:
    """An ONNX model in an onnxruntime session on the CPU (session.run is safe from several threads)."""

    def __init__(self, path: Path) -> None:
        import onnxruntime

        self.path = path
        data = path.read_bytes()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1  # small models, one server per path: no thread pool spinning per server
        options.inter_op_num_threads = 1
        try:  # from bytes: no external data file is read (the registry holds one file)
            self.session = onnxruntime.InferenceSession(data, sess_options=options,
                                                        providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's own exception types (InvalidProtobuf, Fail, ...)
            raise ModelError(f"model artifact {path} is not an ONNX model onnxruntime can run: {exc}") from None
        self.shape = OnnxShape(self.session, data, path)
        meta = self.session.get_modelmeta().custom_metadata_map
        name, version = meta.get("name"), meta.get("version")
        self.model_id = f"{name}:{version}" if name and version else None

    def predict(self, instances: Sequence[Any]) -> list[Any]:
        import numpy

        rows = _rows(instances, self.shape.features, self.shape.width)
        if not rows:
            return []
        feed = {self.shape.input: numpy.asarray(rows, dtype=self.shape.dtype)}
        try:
            outputs = self.session.run(None, feed)
        except Exception as exc:
            raise ModelError(f"the model refused the instances: {exc}") from None
        return self.shape.answers(outputs, len(rows))


class OnnxShape:
    """What an onnxruntime session takes and how its outputs become answers (also for MLflow's onnx flavor)."""

    def __init__(self, session: Any, data: bytes | None, path: Path) -> None:
        inputs = session.get_inputs()
        if len(inputs) != 1:
            raise ModelError(f"model artifact {path}: the onnx format serves models with one input (a matrix of "
                             f"features); this one has {len(inputs)}: {', '.join(i.name for i in inputs)}")
        first = inputs[0]
        self.input = first.name
        self.dtype = _ONNX_DTYPES.get(first.type)
        if self.dtype is None:
            raise ModelError(f"model artifact {path}: input {first.name!r} is a {first.type}; the onnx format feeds "
                             "a float or double matrix")
        shape = list(first.shape or [])
        if len(shape) != 2:
            raise ModelError(f"model artifact {path}: input {first.name!r} has shape {shape}; the onnx format feeds "
                             "a matrix [instances, features]")
        self.width = shape[1] if isinstance(shape[1], int) else None
        meta = session.get_modelmeta().custom_metadata_map
        self.features = _names(meta.get("features"))
        if self.features is not None and self.width is not None and len(self.features) != self.width:
            raise ModelError(f"model artifact {path}: its metadata names {len(self.features)} features, its input "
                             f"takes {self.width}")
        self.outputs = [o.name for o in session.get_outputs()]
        types = [o.type for o in session.get_outputs()]
        self.classifier = (len(types) == 2 and types[0] in ("tensor(string)", "tensor(int64)")
                           and (types[1].startswith("seq(map(") or types[1] in ("tensor(float)", "tensor(double)")))
        self.classes = _names(meta.get("classes")) or (_graph_classes(data) if self.classifier else None)

    def answers(self, outputs: Sequence[Any], count: int) -> list[Any]:
        if self.classifier:
            return _classified(outputs[0], outputs[1], self.classes)
        return _per_instance(dict(zip(self.outputs, outputs, strict=True)), count)


def _graph_classes(data: bytes | None) -> list[str] | None:
    """The class labels of the graph's classifier node (ai.onnx.ml *Classifier), when the onnx package is there."""
    if data is None or _absent("onnx"):
        return None
    import onnx

    try:
        model = onnx.load_model_from_string(data)
    except Exception:
        return None
    for node in model.graph.node:
        if node.domain == "ai.onnx.ml" and node.op_type.endswith("Classifier"):
            for attr in node.attribute:
                if attr.name == "classlabels_strings":
                    return [s.decode() for s in attr.strings]
                if attr.name in ("classlabels_int64s", "classlabels_ints"):
                    return [str(i) for i in attr.ints]
    return None


# -- sklearn (skops) ---------------------------------------------------------------------------------------------
def safe_type(name: str) -> bool:
    """Whether a type a skops file names may be trusted: a class (not a function) of scikit-learn, NumPy or SciPy,
    outside their test and build helpers. Resolving it imports that package's module, as skops' load would."""
    parts = name.split(".")
    if parts[0] not in SAFE_PACKAGES or UNSAFE_PARTS & set(parts) or not all(p.isidentifier() for p in parts):
        return False
    for split in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:split]))
        except Exception:  # not a module (ImportError), or one that fails to import
            continue
        for attr in parts[split:]:
            obj = getattr(obj, attr, None)
        return isinstance(obj, type)
    return False


def _skops_trusted(path: Path, listed: Sequence[str] = (), where: str | None = None) -> list[str]:
    """The types of the skops file `path` to trust, when `safe_type` accepts each of them and of `listed` (what an
    MLmodel lists as trusted); else ModelError naming the others (and `where`, the artifact, default `path`)."""
    import skops.io

    where = where or f"model artifact {path}"
    try:
        untrusted = list(skops.io.get_untrusted_types(file=path))
    except Exception as exc:  # not a zip, no schema
        raise ModelError(f"{where} is not a skops file: {exc}") from None
    refused = sorted({t for t in [*untrusted, *listed] if not safe_type(t)})
    if refused:
        raise ModelError(f"{where} names types mlplat does not trust: {', '.join(refused)} (trusted: classes of "
                         "scikit-learn, NumPy and SciPy)")
    return sorted({*untrusted, *listed})


def _skops_load(path: Path) -> Any:
    import skops.io

    trusted = _skops_trusted(path)
    try:
        return skops.io.load(path, trusted=trusted)
    except Exception as exc:
        raise ModelError(f"model artifact {path} could not be loaded with skops: {exc}") from None


class SklearnPredictor:
    """A scikit-learn estimator (predict is safe from several threads: it changes nothing)."""

    model_id: str | None = None

    def __init__(self, path: Path, estimator: Any = None) -> None:
        self.path = path
        self.estimator = _skops_load(path) if estimator is None else estimator
        if not callable(getattr(self.estimator, "predict", None)):
            raise ModelError(f"model artifact {path} holds a {type(self.estimator).__name__}, which cannot predict")
        names = getattr(self.estimator, "feature_names_in_", None)
        self.features = [str(n) for n in names] if names is not None else None
        width = getattr(self.estimator, "n_features_in_", None)
        self.width = int(width) if width is not None else None
        if self.features is not None:  # fitted on a DataFrame, given rows in feature order: nothing to warn about
            warnings.filterwarnings("ignore", message="X does not have valid feature names")

    def predict(self, instances: Sequence[Any]) -> list[Any]:
        import numpy

        rows = _rows(instances, self.features, self.width)
        if not rows:
            return []
        matrix = numpy.asarray(rows, dtype="float64")
        return self.answers(matrix, lambda x: self.estimator.predict(x))

    def answers(self, matrix: Any, predict: Callable[[Any], Any]) -> list[Any]:
        try:
            labels = predict(matrix)
            classes = getattr(self.estimator, "classes_", None)
            if classes is not None and callable(getattr(self.estimator, "predict_proba", None)):
                probabilities = self.estimator.predict_proba(matrix)
                return _classified(labels, probabilities, [str(c) for c in _plain(classes)])
        except ModelError:
            raise
        except (ValueError, TypeError) as exc:
            raise ModelError(f"the model refused the instances: {exc}") from None
        return _per_instance({"prediction": labels}, len(matrix))


# -- mlflow ------------------------------------------------------------------------------------------------------
def mlflow_problem(mlmodel: Any) -> tuple[str, str] | None:
    """Why an MLmodel (parsed) is refused, as (code, reason), or None: see the module doc for what is accepted."""
    flavors = mlmodel.get("flavors") if isinstance(mlmodel, Mapping) else None
    if not isinstance(flavors, Mapping) or not isinstance(flavors.get("python_function"), Mapping):
        return "model-artifact-unsafe", "its MLmodel has no python_function flavor (mlflow.pyfunc loads only those)"
    pyfunc = flavors["python_function"]
    loader = pyfunc.get("loader_module")
    if pyfunc.get("python_model") or pyfunc.get("cloudpickle_version"):
        return "model-artifact-pickle", ("its python_function flavor is a python_model, which MLflow stores with "
                                         "cloudpickle (a pickle); mlplat does not load pickles")
    if pyfunc.get("model_code_path") or loader == "mlflow.pyfunc.model":
        return "model-artifact-unsafe", "it is an MLflow model from code, which runs that code to load it"
    if pyfunc.get("code"):
        return "model-artifact-unsafe", ("its python_function flavor has code paths (put on sys.path before the "
                                         "loader is imported, so they run); mlplat loads MLflow models without code")
    if loader not in MLFLOW_LOADERS:
        return "model-artifact-unsafe", (f"its python_function loader_module is {loader!r}; mlplat loads "
                                         f"{' and '.join(MLFLOW_LOADERS)} models only (flavors that unpickle nothing)")
    if loader == "mlflow.sklearn":
        sklearn = flavors.get("sklearn")
        fmt = sklearn.get("serialization_format", "pickle") if isinstance(sklearn, Mapping) else None
        if fmt != "skops":
            return "model-artifact-pickle", (f"its sklearn flavor is saved as {fmt or 'an unknown format'}; "
                                             "mlplat loads only serialization_format skops (MLflow >= 3.9: "
                                             "mlflow.sklearn.save_model(..., serialization_format='skops'))")
        if sklearn.get("code"):
            return "model-artifact-unsafe", "its sklearn flavor has code paths, which would run"
    if loader == "mlflow.onnx":
        onnx = flavors.get("onnx")
        if not isinstance(onnx, Mapping):
            return "model-artifact-unsafe", "its python_function loader is mlflow.onnx and it has no onnx flavor"
        providers = onnx.get("providers") or []
        if isinstance(providers, str):
            providers = [providers]
        if not isinstance(providers, list) or not all(isinstance(p, str) for p in providers):
            return "model-artifact-unsafe", ("its onnx flavor gives execution providers with options (which may "
                                             "name libraries to load); give provider names only")
        options = onnx.get("onnx_session_options")
        if isinstance(options, Mapping) and options.get("extra_session_config"):
            return "model-artifact-unsafe", "its onnx flavor sets extra_session_config; mlplat does not pass it on"
        if onnx.get("code"):
            return "model-artifact-unsafe", "its onnx flavor has code paths, which would run"
    return None


def _read_mlmodel(text: bytes | str, where: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ModelError(f"{where}: MLmodel is not YAML: {exc}") from None


@contextlib.contextmanager
def _mlflow_model(path: Path, *, extract: bool = True) -> Iterator[tuple[Path | None, Any]]:
    """(the model directory, its parsed MLmodel) for a directory, an MLmodel file or a zip of the directory (its
    MLmodel at the top or in one folder). A zip is extracted into a temporary directory (removed on exit) only
    with `extract`; without, the directory is None."""
    where = f"model artifact {path}"
    if path.is_dir() or path.name == "MLmodel":
        directory = path if path.is_dir() else path.parent
        if not (directory / "MLmodel").is_file():
            raise ModelError(f"{where}: an MLflow model directory holds an MLmodel file; {directory} has none")
        yield directory, _read_mlmodel((directory / "MLmodel").read_bytes(), where)
        return
    if not zipfile.is_zipfile(path):
        raise ModelError(f"{where}: an MLflow model is a directory with an MLmodel file, or a .zip of one")
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise ModelError(f"{where}: a damaged zip: {exc}") from None
    with archive:
        names = archive.namelist()
        tops = [n for n in names if n == "MLmodel" or (n.count("/") == 1 and n.endswith("/MLmodel"))]
        if len(tops) != 1:
            raise ModelError(f"{where}: the zip must hold one MLmodel, at its top or in one folder (found "
                             f"{len(tops)})")
        mlmodel = _read_mlmodel(archive.read(tops[0]), where)
        if not extract:
            yield None, mlmodel
            return
        for info in archive.infolist():
            target = Path(info.filename)
            if target.is_absolute() or ".." in target.parts or (info.external_attr >> 16) & 0o170000 == 0o120000:
                raise ModelError(f"{where}: the zip holds {info.filename!r}, a path outside the model or a symlink")
        scratch = Path(tempfile.mkdtemp(prefix="mlplat-mlflow-"))
        try:
            try:
                archive.extractall(scratch)
            except (zipfile.BadZipFile, OSError) as exc:  # a damaged member, a full disk
                raise ModelError(f"{where}: cannot extract it: {exc}") from None
            yield scratch / tops[0].rpartition("/")[0] if "/" in tops[0] else scratch, mlmodel
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def _load_mlflow(path: Path) -> Predictor:
    with _mlflow_model(path) as (directory, mlmodel):
        assert directory is not None
        found = mlflow_problem(mlmodel)
        if found is not None:
            raise ModelError(f"model artifact {path}: {found[1]}")
        flavors = mlmodel["flavors"]
        loader = flavors["python_function"]["loader_module"]
        _require("mlflow", path, ("onnx", "onnxruntime") if loader == "mlflow.onnx" else ("skops", "sklearn"))
        onnx_model = None
        if loader == "mlflow.onnx":  # its bytes: the class names of a classifier graph without metadata
            data = directory / str(flavors["onnx"].get("data") or "model.onnx")
            if data.resolve().is_relative_to(directory.resolve()) and data.is_file():
                onnx_model = data.read_bytes()
        if loader == "mlflow.sklearn":  # check the file's types before MLflow loads it, trusting what MLmodel says
            sklearn = flavors["sklearn"]
            listed = [str(t) for t in sklearn.get("skops_trusted_types") or []]
            inner = str(sklearn.get("pickled_model") or "model.skops")
            data = directory / inner
            if not data.resolve().is_relative_to(directory.resolve()):
                raise ModelError(f"model artifact {path}: its sklearn flavor's file lies outside the model")
            why = pickle_problem(data)
            if why is not None:
                raise ModelError(pickle_refusal(Path(f"{path} ({inner})"), why))
            _skops_trusted(data, listed, f"model artifact {path} ({inner}, with the types MLmodel trusts)")
        # MLflow's own guard (MLflow >= 3.9; it allows by default): off for every loader that could unpickle. It
        # also refuses skops files, as their trusted types are read from MLmodel: those (and the file's) were
        # checked against our allow-list just above, so for a skops sklearn flavor it lets MLflow load.
        allow = "true" if loader == "mlflow.sklearn" else "false"
        os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = allow
        import mlflow.pyfunc

        try:
            model = mlflow.pyfunc.load_model(str(directory))
        except Exception as exc:
            raise ModelError(f"model artifact {path}: MLflow could not load it: {exc}") from None
        return MlflowPredictor(path, model, loader, onnx_model)


class MlflowPredictor:
    """An MLflow pyfunc model: instances go through its predict (and so its signature's checks)."""

    model_id: str | None = None

    def __init__(self, path: Path, model: Any, loader: str, onnx_model: bytes | None = None) -> None:
        self.path = path
        self.model = model
        raw = model.get_raw_model()  # mlflow.onnx: its onnxruntime session; mlflow.sklearn: the estimator
        self.onnx = OnnxShape(raw, onnx_model, path) if loader == "mlflow.onnx" else None
        self.sklearn = SklearnPredictor(path, raw) if loader == "mlflow.sklearn" else None
        signature = model.metadata.signature
        self.columns: list[str] | None = None
        self.dtype = self.onnx.dtype if self.onnx else "float64"
        if signature is not None and signature.inputs is not None:
            if signature.inputs.is_tensor_spec():
                spec = signature.inputs.inputs[0]
                self.dtype = str(spec.type)
            else:
                self.columns = list(signature.inputs.input_names())
        self.features = self.columns or (self.onnx.features if self.onnx else self.sklearn.features if self.sklearn
                                         else None)
        self.width = self.onnx.width if self.onnx else self.sklearn.width if self.sklearn else None

    def predict(self, instances: Sequence[Any]) -> list[Any]:
        import numpy

        rows = _rows(instances, self.features, self.width)
        if not rows:
            return []
        if self.columns is not None:
            import pandas

            matrix: Any = pandas.DataFrame(rows, columns=self.columns)
        else:
            matrix = numpy.asarray(rows, dtype=self.dtype)
        if self.sklearn is not None:
            return self.sklearn.answers(matrix, self._predict)
        outputs = self._predict(matrix)
        if self.onnx is not None and isinstance(outputs, Mapping):
            return self.onnx.answers([outputs[name] for name in self.onnx.outputs], len(rows))
        if hasattr(outputs, "to_dict"):  # a DataFrame: one object per row
            return outputs.to_dict(orient="records") if hasattr(outputs, "columns") else _plain(outputs.to_numpy())
        return _per_instance(outputs if isinstance(outputs, Mapping) else {"prediction": outputs}, len(rows))

    def _predict(self, matrix: Any) -> Any:
        try:
            return self.model.predict(matrix)
        except Exception as exc:  # MlflowException on a signature mismatch, the flavor's own errors
            raise ModelError(f"the model refused the instances: {exc}") from None
