"""Model files are untrusted bytes: crafted ones run nothing, corrupt ones raise ModelLoadError.

Each crafted file is a real model with one part rewritten, the way an attacker who can write the
store and the registry row would build it; each payload would create a marker file if it ran.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from airflow_mlops.errors import ModelLoadError, TrainingError
from airflow_mlops.training.allowlist import ALLOWED_TYPES
from airflow_mlops.training.base import FitContext
from airflow_mlops.training.features import FeatureSpec
from airflow_mlops.training.sklearn_flavor import SklearnTrainer
from airflow_mlops.training.torch_flavor import TorchTrainer
from airflow_mlops.training.xgboost_flavor import XGBoostTrainer

B, M, R = "binary_classification", "multiclass_classification", "regression"
POSITIVE, CATEGORICAL = "positive target", "categorical features only"
TREES = {"n_estimators": 3, "max_depth": 3}
# Every estimator `model.estimator` may name, with the params that reach its other internal types.
SUPPORTED = [
    ("linear_model.LogisticRegression", (B, M), {}), ("linear_model.LogisticRegressionCV", (B,), {"cv": 2, "Cs": 2}),
    ("linear_model.RidgeClassifier", (B, M), {}), ("linear_model.RidgeClassifierCV", (B,), {}),
    ("linear_model.SGDClassifier", (B, M), {}), ("linear_model.SGDClassifier", (B,), {"loss": "log_loss"}),
    ("linear_model.SGDClassifier", (B,), {"loss": "modified_huber"}),
    ("linear_model.Perceptron", (B,), {}), ("linear_model.PassiveAggressiveClassifier", (B,), {}),
    ("linear_model.LinearRegression", (R,), {}), ("linear_model.Ridge", (R,), {}), ("linear_model.RidgeCV", (R,), {}),
    ("linear_model.Lasso", (R,), {}), ("linear_model.LassoCV", (R,), {"cv": 2}), ("linear_model.ElasticNet", (R,), {}),
    ("linear_model.ElasticNetCV", (R,), {"cv": 2}), ("linear_model.Lars", (R,), {}), ("linear_model.LarsCV", (R,), {"cv": 2}),
    ("linear_model.LassoLars", (R,), {}), ("linear_model.LassoLarsCV", (R,), {"cv": 2}), ("linear_model.LassoLarsIC", (R,), {}),
    ("linear_model.OrthogonalMatchingPursuit", (R,), {}), ("linear_model.OrthogonalMatchingPursuitCV", (R,), {"cv": 2}),
    ("linear_model.BayesianRidge", (R,), {}), ("linear_model.ARDRegression", (R,), {}),
    ("linear_model.HuberRegressor", (R,), {}), ("linear_model.QuantileRegressor", (R,), {}),
    ("linear_model.RANSACRegressor", (R,), {}), ("linear_model.TheilSenRegressor", (R,), {"max_subpopulation": 100}),
    ("linear_model.SGDRegressor", (R,), {}), ("linear_model.PassiveAggressiveRegressor", (R,), {}),
    ("linear_model.TweedieRegressor", (R,), {}), ("linear_model.PoissonRegressor", (POSITIVE,), {}),
    ("linear_model.GammaRegressor", (POSITIVE,), {}),
    ("tree.DecisionTreeClassifier", (B, M), {}), ("tree.DecisionTreeRegressor", (R,), {}),
    ("tree.ExtraTreeClassifier", (B,), {}), ("tree.ExtraTreeRegressor", (R,), {}),
    ("ensemble.RandomForestClassifier", (B, M), TREES), ("ensemble.RandomForestRegressor", (R,), TREES),
    ("ensemble.ExtraTreesClassifier", (B,), TREES), ("ensemble.ExtraTreesRegressor", (R,), TREES),
    ("ensemble.GradientBoostingClassifier", (B, M), TREES), ("ensemble.GradientBoostingRegressor", (R,), TREES),
    ("ensemble.GradientBoostingRegressor", (R,), {**TREES, "loss": "huber"}),
    ("ensemble.GradientBoostingRegressor", (R,), {**TREES, "loss": "absolute_error"}),
    ("ensemble.GradientBoostingRegressor", (R,), {**TREES, "loss": "quantile"}),
    ("ensemble.HistGradientBoostingClassifier", (B, M), {"max_iter": 3}),
    ("ensemble.HistGradientBoostingRegressor", (R,), {"max_iter": 3}),
    ("ensemble.HistGradientBoostingRegressor", (R,), {"max_iter": 3, "loss": "absolute_error"}),
    ("ensemble.HistGradientBoostingRegressor", (R,), {"max_iter": 3, "loss": "quantile", "quantile": 0.5}),
    ("ensemble.HistGradientBoostingRegressor", (POSITIVE,), {"max_iter": 3, "loss": "poisson"}),
    ("ensemble.HistGradientBoostingRegressor", (POSITIVE,), {"max_iter": 3, "loss": "gamma"}),
    ("ensemble.AdaBoostClassifier", (B,), {"n_estimators": 3}), ("ensemble.AdaBoostRegressor", (R,), {"n_estimators": 3}),
    ("ensemble.BaggingClassifier", (B,), {"n_estimators": 3, "max_features": 0.5}),
    ("ensemble.BaggingRegressor", (R,), {"n_estimators": 3}),
    ("svm.SVC", (B, M), {}), ("svm.NuSVC", (B,), {}), ("svm.LinearSVC", (B,), {}),
    ("svm.SVR", (R,), {}), ("svm.NuSVR", (R,), {}), ("svm.LinearSVR", (R,), {}),
    ("neighbors.KNeighborsClassifier", (B, M), {}),
    ("neighbors.KNeighborsClassifier", (B,), {"algorithm": "ball_tree", "metric": "manhattan"}),
    ("neighbors.KNeighborsClassifier", (B,), {"algorithm": "brute"}),
    ("neighbors.KNeighborsRegressor", (R,), {}), ("neighbors.RadiusNeighborsClassifier", (B,), {"radius": 5.0}),
    ("neighbors.RadiusNeighborsRegressor", (R,), {"radius": 5.0}), ("neighbors.NearestCentroid", (B,), {}),
    ("naive_bayes.GaussianNB", (B, M), {}), ("naive_bayes.BernoulliNB", (B,), {}),
    ("naive_bayes.MultinomialNB", (CATEGORICAL,), {}), ("naive_bayes.ComplementNB", (CATEGORICAL,), {}),
    ("neural_network.MLPClassifier", (B, M), {"max_iter": 5}),
    ("neural_network.MLPClassifier", (B,), {"max_iter": 5, "solver": "sgd"}),
    ("neural_network.MLPRegressor", (R,), {"max_iter": 5}),
    ("discriminant_analysis.LinearDiscriminantAnalysis", (B, M), {}),
    ("discriminant_analysis.QuadraticDiscriminantAnalysis", (B,), {"reg_param": 0.5}),
    ("gaussian_process.GaussianProcessClassifier", (B, M), {}), ("gaussian_process.GaussianProcessRegressor", (R,), {}),
    ("kernel_ridge.KernelRidge", (R,), {}), ("cross_decomposition.PLSRegression", (R,), {"n_components": 1}),
    ("dummy.DummyClassifier", (B,), {}), ("dummy.DummyRegressor", (R,), {}),
    ("calibration.CalibratedClassifierCV", (B, M), {"cv": 2}),
    ("semi_supervised.LabelPropagation", (B,), {}), ("semi_supervised.LabelSpreading", (B,), {}),
]
CASES = [(f"sklearn.{path}", data, params) for path, datasets, params in SUPPORTED for data in datasets]


def _frames() -> dict[str, tuple[pd.DataFrame, np.ndarray, str, int]]:
    rng = np.random.default_rng(0)
    n = 80
    mixed = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "c": rng.choice(["x", "y", "z"], n)})
    mixed.loc[3, "a"] = np.nan
    mixed.loc[4, "c"] = None
    categories = pd.DataFrame({"c": rng.choice(["x", "y", "z"], n), "d": rng.choice(["u", "v"], n)})
    return {
        B: (mixed, (mixed["b"] > 0).astype(int).to_numpy(), B, 2),
        M: (mixed, rng.integers(0, 3, n), M, 3),
        R: (mixed, mixed["b"].to_numpy() * 2, R, 0),
        POSITIVE: (mixed, np.exp(mixed["b"].to_numpy()), R, 0),
        CATEGORICAL: (categories, (categories["c"] == "x").astype(int).to_numpy(), B, 2),
    }


FRAMES = _frames()


def _fit(trainer: Any, data: str = B, estimator: str | None = None, params: dict | None = None) -> tuple[Any, pd.DataFrame, dict]:
    frame, y, task, n_classes = FRAMES[data]
    spec = FeatureSpec.from_frame(frame, list(frame.columns), None)
    context = FitContext(task=task, n_classes=n_classes, params=params or {}, seed=1, spec=spec, estimator=estimator, device="cpu")
    trainer.fit(spec.frame(frame), y, None, None, context)
    return trainer, spec.frame(frame), {"features": spec.to_dict()}


@pytest.fixture(scope="module")
def sklearn_bytes() -> bytes:
    """The default estimator: a HistGradientBoostingClassifier behind the preprocessing."""
    return _fit(SklearnTrainer(), params={"max_iter": 3})[0].save()


@pytest.fixture(scope="module")
def model_files(sklearn_bytes: bytes) -> dict[str, tuple[bytes, dict]]:
    xgboost, _, xgboost_metadata = _fit(XGBoostTrainer(), params={"n_estimators": 3, "max_depth": 3})
    torch, _, torch_metadata = _fit(TorchTrainer(), params={"epochs": 2, "hidden_sizes": [4]})
    return {
        "sklearn": (sklearn_bytes, {}),
        "xgboost": (xgboost.save(), xgboost_metadata),
        "torch": (torch.save(), torch_metadata),
    }


TRAINERS = {"sklearn": SklearnTrainer, "xgboost": XGBoostTrainer, "torch": TorchTrainer}


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "pwned"


# ---------------------------------------------------------------- the allow-list


@pytest.mark.parametrize(("estimator", "data", "params"), CASES, ids=[f"{e}-{d}-{i}" for i, (e, d, _) in enumerate(CASES)])
def test_every_supported_estimator_names_only_listed_types_and_loads_back(estimator, data, params):
    import skops.io

    trainer, frame, metadata = _fit(SklearnTrainer(), data, estimator, params)
    saved = trainer.save()
    named = _schema_types(json.loads(zipfile.ZipFile(io.BytesIO(saved)).read("schema.json")))
    assert named <= ALLOWED_TYPES, f"add to training/allowlist.py: {sorted(named - ALLOWED_TYPES)}"
    assert set(skops.io.get_untrusted_types(data=saved)) <= ALLOWED_TYPES
    loaded = SklearnTrainer.load(saved, metadata)
    np.testing.assert_array_equal(loaded.predict(frame), trainer.predict(frame))


def _schema_types(schema: Any) -> set[str]:
    if isinstance(schema, list):
        return set().union(*map(_schema_types, schema)) if schema else set()
    if not isinstance(schema, dict):
        return set()
    own = {f"{schema['__module__']}.{schema['__class__']}"} if "__loader__" in schema else set()
    return own.union(*map(_schema_types, schema.values()))


def test_the_allow_list_names_full_types_never_prefixes():
    assert all(name.count(".") >= 1 and not name.endswith((".", "*")) for name in ALLOWED_TYPES)
    assert not {"builtins.eval", "builtins.exec", "builtins.getattr", "posix.system", "os.system",
                "functools.partial", "operator.attrgetter", "numpy.load"} & ALLOWED_TYPES


@pytest.mark.parametrize("estimator", ["subprocess.Popen", "os.system", "builtins.eval", "xgboost.XGBClassifier"])
def test_an_estimator_outside_scikit_learn_is_never_imported_or_called(estimator, monkeypatch):
    """A pipeline file naming `subprocess.Popen` with `params: {args: [...]}` used to start it."""
    import subprocess

    started = []
    monkeypatch.setattr(subprocess, "Popen", lambda *args, **kwargs: started.append(args))
    with pytest.raises(TrainingError, match=f"model.estimator {estimator} is not a scikit-learn estimator"):
        _fit(SklearnTrainer(), B, estimator, params={"args": ["true"]})
    assert started == []


@pytest.mark.parametrize("estimator", ["sklearn.naive_bayes.CategoricalNB",
                                       "sklearn.semi_supervised.SelfTrainingClassifier"])
def test_an_estimator_off_the_list_is_refused_before_training(estimator):
    with pytest.raises(TrainingError, match=f"model.estimator {estimator} is not one of the estimators"):
        _fit(SklearnTrainer(), B, estimator)


def test_a_fitted_model_naming_an_unlisted_type_is_refused_at_save():
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    trainer = SklearnTrainer(Pipeline([("log", FunctionTransformer(np.log1p))]))
    with pytest.raises(TrainingError, match=r"could not be loaded back: numpy.log1p \(as a FunctionNode"):
        trainer.save()


# ---------------------------------------------------------------- crafted skops files


def _rewrite(data: bytes, edit: Any, members: dict[str, bytes] | None = None) -> bytes:
    """The skops zip with its schema passed through `edit` and members added or replaced."""
    with zipfile.ZipFile(io.BytesIO(data)) as source:
        contents = {name: source.read(name) for name in source.namelist()}
    schema = json.loads(contents["schema.json"])
    contents["schema.json"] = json.dumps(edit(schema) or schema).encode()
    contents.update(members or {})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as target:
        for name, content in contents.items():
            target.writestr(name, content)
    return buffer.getvalue()


def _json(value: Any) -> dict:
    return {"__class__": "str", "__module__": "builtins", "__loader__": "JsonNode", "content": json.dumps(value), "is_json": True}


def _tuple(*items: dict) -> dict:
    return {"__class__": "tuple", "__module__": "builtins", "__loader__": "TupleNode", "content": list(items)}


def _call(module: str, name: str, *args: dict) -> dict:
    """A LossNode: skops calls `module.name(*args)` when it builds it, the demonstrated attack."""
    empty = {"__class__": "dict", "__module__": "builtins", "__loader__": "DictNode", "content": {},
             "key_types": {"__class__": "list", "__module__": "builtins", "__loader__": "ListNode", "content": []}}
    return {"__class__": name, "__module__": module, "__loader__": "LossNode", "__reduce__": {"args": _tuple(*args)},
            "content": empty}


def _attach(node: dict) -> Any:
    """Put a node in the pipeline's own attributes, where skops builds it on load."""
    def edit(schema: dict) -> None:
        schema["content"]["content"]["memory"] = node
    return edit


def _crafted(marker: Path) -> dict[str, tuple[Any, dict]]:
    shell = f"touch {marker}"
    code = f"__import__('os').system({shell!r})"
    return {
        "builtins.eval in a reduce node": (_attach(_call("builtins", "eval", _json(code))), {}),
        "builtins.exec in a reduce node": (_attach(_call("builtins", "exec", _json(code))), {}),
        "os.system in a reduce node": (_attach(_call("os", "system", _json(shell))), {}),
        "posix.system, trusted before through metadata['estimator']": (
            _attach(_call("posix", "system", _json(shell))), {"estimator": "posix.system"}),
        "subprocess.getoutput": (_attach(_call("subprocess", "getoutput", _json(shell))), {}),
        "importlib.import_module": (_attach(_call("importlib", "import_module", _json("antigravity"))), {}),
        "builtins.getattr chain": (_attach(_call("builtins", "getattr", _call("builtins", "__import__", _json("os")),
                                                 _json("system"))), {}),
        "sklearn module, dotted class name": (_attach(_call("sklearn", "pipeline.Pipeline")), {}),
        "function node: builtins.exec as a FunctionTransformer func": (_attach({
            "__class__": "FunctionTransformer", "__module__": "sklearn.preprocessing._function_transformer",
            "__loader__": "ObjectNode", "content": {
                "__class__": "dict", "__module__": "builtins", "__loader__": "DictNode",
                "content": {"func": {"__class__": "exec", "__module__": "builtins", "__loader__": "FunctionNode"}},
                "key_types": {"__class__": "list", "__module__": "builtins", "__loader__": "ListNode",
                              "content": [{"__class__": "str", "__module__": "builtins", "__loader__": "TypeNode"}]}}}), {}),
        "function node: a numpy ufunc skops trusts by default": (
            _attach({"__class__": "log1p", "__module__": "numpy", "__loader__": "FunctionNode"}), {}),
        "partial node: functools.partial(eval, code)": (_attach({
            "__class__": "partial", "__module__": "functools", "__loader__": "PartialNode", "content": {
                "func": {"__class__": "eval", "__module__": "builtins", "__loader__": "FunctionNode"},
                "args": _tuple(_json(code)), "kwds": _json({}), "namespace": _json(None)}}), {}),
        "operator node: operator.attrgetter": (_attach({
            "__class__": "attrgetter", "__module__": "operator", "__loader__": "OperatorFuncNode",
            "attrs": _tuple(_json("__class__.__init__.__globals__"))}), {}),
        "method node on a listed type": (_attach({
            "__class__": "Pipeline", "__module__": "sklearn.pipeline", "__loader__": "MethodNode",
            "content": {"func": "__init_subclass__", "obj": {"__class__": "Pipeline", "__module__": "sklearn.pipeline",
                                                             "__loader__": "ObjectNode"}}}), {}),
        "type node: os.system": (_attach({"__class__": "system", "__module__": "os", "__loader__": "TypeNode"}), {}),
        "a loader skops does not have": (_attach({"__class__": "dict", "__module__": "builtins", "__loader__": "PickleNode"}), {}),
        "random generator naming a non-generator": (_bit_generator("system"), {}),
        "root object swapped for os.system": (lambda schema: schema.update(_call("os", "system", _json(shell))), {}),
    }


def _bit_generator(name: str) -> Any:
    def edit(schema: dict) -> None:
        for node in _nodes(schema):
            if node["__loader__"] == "RandomGeneratorNode":
                node["content"]["bit_generator"]["content"]["bit_generator"]["content"] = json.dumps(name)
                return
        raise AssertionError("the model holds no random generator")
    return edit


def _nodes(schema: Any) -> list[dict]:
    if isinstance(schema, list):
        return [node for item in schema for node in _nodes(item)]
    if not isinstance(schema, dict):
        return []
    own = [schema] if "__loader__" in schema else []
    return own + [node for value in schema.values() for node in _nodes(value)]


CRAFTED = list(_crafted(Path("/unused")))


@pytest.mark.parametrize("case", CRAFTED)
def test_a_crafted_skops_file_is_refused_before_anything_runs(case, sklearn_bytes, marker):
    edit, metadata = _crafted(marker)[case]
    crafted = _rewrite(sklearn_bytes, edit)
    with pytest.raises(ModelLoadError, match="sklearn model file names types that are not allowed"):
        SklearnTrainer.load(crafted, metadata)
    assert not marker.exists()


def test_the_refusal_names_the_types_and_caps_the_list(sklearn_bytes, marker):
    many = [_call("builtins", f"name{i}") for i in range(50)]
    crafted = _rewrite(sklearn_bytes, _attach(_tuple(*many, _call("builtins", "eval", _json("1")))))
    with pytest.raises(ModelLoadError, match=r"builtins.eval, builtins.name0, .* and 41 more") as error:
        SklearnTrainer.load(crafted, {})
    assert len(str(error.value)) < 1000


def test_a_pickled_numpy_array_inside_a_skops_file_is_not_unpickled(sklearn_bytes, marker):
    class Payload:
        def __reduce__(self) -> tuple:
            return (os.system, (f"touch {marker}",))

    buffer = io.BytesIO()
    np.save(buffer, np.array([Payload()], dtype=object), allow_pickle=True)
    arrays = [node for node in _nodes(json.loads(zipfile.ZipFile(io.BytesIO(sklearn_bytes)).read("schema.json")))
              if node["__loader__"] == "NdArrayNode" and node.get("type") == "numpy"]
    crafted = _rewrite(sklearn_bytes, lambda schema: None, {arrays[0]["file"]: buffer.getvalue()})
    with pytest.raises(ModelLoadError, match="sklearn model file is corrupt: ValueError"):
        SklearnTrainer.load(crafted, {})
    assert not marker.exists()
    assert b"posix" in buffer.getvalue() or b"system" in buffer.getvalue()


# ---------------------------------------------------------------- corrupt trees


def _with_tree_nodes(data: bytes, loader: str, change: Any) -> bytes:
    """The model with the first node array of the first `loader` node passed through `change`."""
    with zipfile.ZipFile(io.BytesIO(data)) as source:
        schema = json.loads(source.read("schema.json"))
        tree = next(node for node in _nodes(schema) if node["__class__"] == loader)
        array_node = next(node for node in _nodes(tree["content"]) if node.get("file") and node["__class__"] == "ndarray")
        nodes = np.load(io.BytesIO(source.read(array_node["file"])), allow_pickle=False)
    change(nodes)
    buffer = io.BytesIO()
    np.save(buffer, nodes, allow_pickle=False)
    return _rewrite(data, lambda schema: None, {array_node["file"]: buffer.getvalue()})


@pytest.mark.parametrize(("field", "value", "problem"), [
    ("left_child", 10_000, "a child index outside the tree"),
    ("left_child", 0, "not after its parent"),
    ("feature", 1_000_000, "a split on a feature outside"),
])
def test_a_decision_tree_whose_nodes_point_outside_is_refused(field, value, problem):
    trainer, frame, metadata = _fit(SklearnTrainer(), B, "sklearn.tree.DecisionTreeClassifier")

    def change(nodes: np.ndarray) -> None:
        nodes[field][0] = value

    with pytest.raises(ModelLoadError, match=f"corrupt tree: .*{problem}"):
        SklearnTrainer.load(_with_tree_nodes(trainer.save(), "Tree", change), metadata)


@pytest.mark.parametrize(("field", "value", "problem"), [
    ("right", 1_000, "a child index outside the tree"),
    ("feature_idx", 99, "a split on a feature outside"),
    ("is_categorical", 1, "a categorical split on a feature that is not categorical"),
])
def test_a_histogram_gradient_boosting_tree_whose_nodes_point_outside_is_refused(sklearn_bytes, field, value, problem):
    def change(nodes: np.ndarray) -> None:
        nodes[field][0] = value

    with pytest.raises(ModelLoadError, match=f"corrupt tree: .*{problem}"):
        SklearnTrainer.load(_with_tree_nodes(sklearn_bytes, "TreePredictor", change), {})


def test_an_xgboost_tree_whose_child_points_outside_is_refused(model_files):
    data, metadata = model_files["xgboost"]
    header = b"left_children[$l#L"
    start = data.index(header) + len(header) + 8  # past the count: the root's left child
    crafted = data[:start] + (1 << 30).to_bytes(4, "big") + data[start + 4 :]
    with pytest.raises(ModelLoadError, match="xgboost model file holds a corrupt model: tree 0 node 0 points outside"):
        XGBoostTrainer.load(crafted, metadata)


# ---------------------------------------------------------------- torch


def test_a_torch_file_whose_pickle_calls_os_system_is_refused(marker):
    import torch

    class Payload:
        def __reduce__(self) -> tuple:
            return (os.system, (f"touch {marker}",))

    buffer = io.BytesIO()
    torch.save({"architecture": Payload(), "preprocess": {}, "state_dict": {}}, buffer)
    assert b"system" in buffer.getvalue()
    with pytest.raises(ModelLoadError, match="torch model file could not be read with weights_only=True: UnpicklingError"):
        TorchTrainer.load(buffer.getvalue(), {})
    assert not marker.exists()


@pytest.mark.parametrize("path", ["subprocess.run", "builtins.exec", "os.system", "airflow_mlops.training.torch_flavor.pick_device"])
def test_a_torch_file_naming_a_function_as_its_module_is_refused(model_files, marker, path):
    import torch

    payload = torch.load(io.BytesIO(model_files["torch"][0]), weights_only=True)
    # As written, subprocess.run(n_inputs, n_outputs, shell=True) would run the shell command.
    payload["architecture"].update(module=path, n_inputs=f"touch {marker}", n_outputs=0, module_params={"shell": True})
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    with pytest.raises(ModelLoadError, match="torch model file"):
        TorchTrainer.load(buffer.getvalue(), {})
    assert not marker.exists()


# ---------------------------------------------------------------- corrupt files, every flavor


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def _own(fraction: float) -> Any:
    return lambda files, flavor: files[flavor][0][: int(len(files[flavor][0]) * fraction)]


def _other(other: str) -> Any:
    return lambda files, flavor: files[other][0]


def _skops_schema(edit: Any) -> Any:
    return lambda files, flavor: _rewrite(files["sklearn"][0], edit)


CORRUPT_FILES = {
    "empty": lambda files, flavor: b"",
    "random bytes": lambda files, flavor: np.random.default_rng(7).bytes(4096),
    "metadata.json of a bundle": lambda files, flavor: json.dumps({"flavor": "torch", "task": B}).encode(),
    "a plain pickle": lambda files, flavor: pickle.dumps({"state_dict": [1, 2]}),
    "a zip without schema.json": lambda files, flavor: _zip({"data.npy": b"\x93NUMPY"}),
    "a zip whose schema.json is not JSON": lambda files, flavor: _zip({"schema.json": b"{not json"}),
    "a zip whose schema.json nests 100000 deep": lambda files, flavor: _zip({"schema.json": b"[" * 100_000 + b"]" * 100_000}),
    "a schema node without its fields": lambda files, flavor: _zip({"schema.json": b'{"__loader__": "ObjectNode"}'}),
    "a schema whose root lacks its content": _skops_schema(lambda schema: schema.pop("content")),
    "a schema with an unknown protocol": _skops_schema(lambda schema: schema.update(protocol=99)),
    "truncated to 2%": _own(0.02), "truncated to 50%": _own(0.5), "truncated to 98%": _own(0.98),
    "one byte short": lambda files, flavor: files[flavor][0][:-1],
    **{f"the {other} model file": _other(other) for other in TRAINERS},
}
CORRUPT = [(flavor, case) for flavor in TRAINERS for case in CORRUPT_FILES if case != f"the {flavor} model file"]


def test_bytes_after_an_xgboost_model_are_refused(model_files):
    # Zip readers ignore bytes after the archive (skops, torch); XGBoost's parser would read past them.
    data, metadata = model_files["xgboost"]
    with pytest.raises(ModelLoadError, match="xgboost model file has 1 bytes after the model"):
        XGBoostTrainer.load(data + b"\x00", metadata)


@pytest.mark.parametrize(("flavor", "case"), CORRUPT, ids=[f"{f}-{c}" for f, c in CORRUPT])
def test_a_corrupt_model_file_raises_model_load_error_naming_the_flavor(model_files, flavor, case):
    data = CORRUPT_FILES[case](model_files, flavor)
    with pytest.raises(ModelLoadError, match=f"^{flavor} model file ") as error:
        TRAINERS[flavor].load(data, model_files[flavor][1])
    assert len(str(error.value)) < 600


@pytest.mark.parametrize("flavor", list(TRAINERS))
def test_every_truncation_of_a_real_model_file_is_refused(model_files, flavor):
    data, metadata = model_files[flavor]
    step = max(1, len(data) // 200)
    for cut in range(0, len(data), step):
        with pytest.raises(ModelLoadError, match=f"^{flavor} model file "):
            TRAINERS[flavor].load(data[:cut], metadata)


@pytest.mark.parametrize("flavor", list(TRAINERS))
def test_the_real_model_files_still_load(model_files, flavor):
    data, metadata = model_files[flavor]
    assert TRAINERS[flavor].load(data, metadata) is not None
