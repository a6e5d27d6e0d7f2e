"""scikit-learn flavor: a listed estimator by import path, preprocessing saved inside, skops on disk.

A model file is untrusted bytes: it is loaded only when every node of its skops
schema is a listed node kind naming a listed type (`training/allowlist.py`),
checked on the JSON before skops builds anything, and its trees are checked
before anything predicts with them.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from airflow_mlops.errors import ModelLoadError, TrainingError
from airflow_mlops.training.allowlist import ALLOWED_TYPES, SKOPS_LOADERS
from airflow_mlops.training.base import FitContext, import_object

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

DEFAULT_ESTIMATORS = {
    "binary_classification": "sklearn.ensemble.HistGradientBoostingClassifier",
    "multiclass_classification": "sklearn.ensemble.HistGradientBoostingClassifier",
    "regression": "sklearn.ensemble.HistGradientBoostingRegressor",
}
SHOWN_TYPES = 10  # a crafted file can name thousands of types: an error lists this many


class SklearnTrainer:
    """A Pipeline of (imputation + scaling | one-hot encoding) and the configured estimator."""

    flavor = "sklearn"
    model_file = "model.skops"

    def __init__(self, pipeline: Any = None) -> None:
        self.pipeline = pipeline

    def fit(self, train: pd.DataFrame, y_train: np.ndarray, validation: pd.DataFrame | None,
            y_validation: np.ndarray | None, context: FitContext) -> dict[str, Any]:
        from sklearn.base import is_classifier, is_regressor
        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import Pipeline, make_pipeline
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        path = context.estimator or DEFAULT_ESTIMATORS[context.task]
        if not path.startswith("sklearn."):
            # Refused before the import: importing a module named by a pipeline file runs its code.
            raise TrainingError(f"model.estimator {path} is not a scikit-learn estimator (sklearn.*)")
        estimator_class = import_object(path, "model.estimator")
        if not inspect.isclass(estimator_class):
            raise TrainingError(f"model.estimator {path!r} is not a class")
        type_name = f"{estimator_class.__module__}.{estimator_class.__name__}"
        if type_name not in ALLOWED_TYPES:
            raise TrainingError(
                f"model.estimator {path} is not one of the estimators whose model files are loaded back "
                "(see 'Model files' in docs/training-and-evaluation.md)"
            )
        params = dict(context.params)
        if "random_state" in inspect.signature(estimator_class).parameters and "random_state" not in params:
            params["random_state"] = context.seed
        try:
            estimator = estimator_class(**params)
        except TypeError as exc:
            raise TrainingError(f"model.params do not fit {path}: {exc}") from None
        wants = is_regressor if context.task == "regression" else is_classifier
        if not wants(estimator):
            kind = "a regressor" if context.task == "regression" else "a classifier"
            raise TrainingError(f"model.estimator {path} is not {kind}, as model.task {context.task} needs")
        spec = context.spec
        numeric = _numeric_steps(estimator, SimpleImputer, StandardScaler, make_pipeline)
        steps = []
        if spec.categorical or numeric != "passthrough":
            steps.append(("preprocess", ColumnTransformer(
                [
                    ("numeric", numeric, spec.numeric),
                    ("categorical", make_pipeline(
                        SimpleImputer(strategy="constant", fill_value="__missing__"),
                        OneHotEncoder(handle_unknown="ignore", categories=[spec.categories[c] + ["__missing__"] for c in spec.categorical]),
                    ), spec.categorical),
                ],
                remainder="drop",
            )))
        # All-numeric data for an estimator that needs no preprocessing goes straight in: no copy.
        self.pipeline = Pipeline([*steps, ("estimator", estimator)])
        try:
            self.pipeline.fit(train, y_train)
        except ValueError as exc:
            raise TrainingError(f"{path} could not be trained: {exc}") from None
        return {"estimator": path, "estimator_params": {k: v for k, v in params.items() if _jsonable(v)}}

    def predict(self, data: pd.DataFrame) -> np.ndarray:
        return self.pipeline.predict(data)

    def predict_proba(self, data: pd.DataFrame) -> np.ndarray:
        if not hasattr(self.pipeline, "predict_proba"):
            raise TrainingError(f"{type(self.pipeline[-1]).__name__} has no predict_proba")
        return self.pipeline.predict_proba(data)

    def save(self) -> bytes:
        """The skops bytes, refused here if `load` would refuse them: no model is stored that cannot be read back."""
        with _no_airflow_probe_warnings():
            data = _skops_io().dumps(self.pipeline)
        refused = _refused_types(_schema(data))
        if refused:
            raise TrainingError(
                f"the fitted {type(self.pipeline[-1]).__name__} holds types the model loader does not allow, "
                f"so it could not be loaded back: {_listing(refused)}"
            )
        _check_trees(self.pipeline)
        return data

    @classmethod
    def load(cls, data: bytes, metadata: dict[str, Any]) -> SklearnTrainer:
        with _no_airflow_probe_warnings():
            skops_io = _skops_io()
        from sklearn.pipeline import Pipeline

        refused = _refused_types(_schema(data))
        if refused:
            raise ModelLoadError(f"sklearn model file names types that are not allowed: {_listing(refused)}")
        try:
            # skops' own audit, a second opinion: it never reports a type outside our list once ours passed.
            untrusted = skops_io.get_untrusted_types(data=data)
            outside = [name for name in untrusted if name not in ALLOWED_TYPES]
            if outside:
                raise ModelLoadError(f"sklearn model file names types that are not allowed: {_listing(outside)}")
            pipeline = skops_io.loads(data, trusted=untrusted)
        except ModelLoadError:
            raise
        except Exception as exc:  # listed types only, yet corrupt content fails in any of skops' or sklearn's ways
            raise ModelLoadError(f"sklearn model file is corrupt: {_describe(exc)}") from None
        if type(pipeline) is not Pipeline:
            raise ModelLoadError(f"sklearn model file holds a {type(pipeline).__name__}, not a Pipeline")
        _check_trees(pipeline)
        return cls(pipeline)

    def library_versions(self) -> dict[str, str]:
        import sklearn
        import skops

        return {"scikit-learn": sklearn.__version__, "skops": skops.__version__}


def _skops_io() -> Any:
    import skops.io

    return skops.io


@contextmanager
def _no_airflow_probe_warnings() -> Iterator[None]:
    """skops names a ufunc by probing every loaded module for it (on import and on dumps); in a
    worker that touches Airflow's deprecated lazy attributes, and each warns (1,160 in one task log)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"The `airflow\.[^`]*`( attribute)? is deprecated", category=FutureWarning)
        yield


def _numeric_steps(estimator: Any, imputer: Any, scaler: Any, make_pipeline: Any) -> Any:
    """Only the preprocessing the estimator needs: trees ignore scale, and some take missing values."""
    steps = []
    try:
        allows_nan = estimator.__sklearn_tags__().input_tags.allow_nan
    except AttributeError:
        allows_nan = False
    if not allows_nan:
        steps.append(imputer(strategy="mean", keep_empty_features=True))
    module = type(estimator).__module__
    if not module.startswith(("sklearn.ensemble", "sklearn.tree")):
        steps.append(scaler())
    return make_pipeline(*steps) if steps else "passthrough"


def _jsonable(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool, type(None), list, dict))


def _describe(exc: BaseException) -> str:
    """The exception's kind and first line, cut short: messages can quote the file's own content."""
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return text if len(text) <= 300 else text[:300] + "..."


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN_TYPES])
    return shown if len(names) <= SHOWN_TYPES else f"{shown} and {len(names) - SHOWN_TYPES} more"


def _schema(data: bytes) -> Any:
    """`schema.json` of a skops file, parsed as plain JSON: nothing is imported or built."""
    import io
    import json
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return json.loads(archive.read("schema.json"))
    except (zipfile.BadZipFile, KeyError) as exc:
        raise ModelLoadError(f"sklearn model file is not a skops file: {_describe(exc)}") from None
    except (ValueError, RecursionError, EOFError, OSError, NotImplementedError, RuntimeError) as exc:
        raise ModelLoadError(f"sklearn model file has an unreadable schema.json: {_describe(exc)}") from None


def _refused_types(schema: Any) -> list[str]:
    """Every node kind and type name in a skops schema that is not allowed.

    Every dict that has a `__loader__` is checked, wherever it sits: skops only builds nodes from
    such dicts, so none it could build escapes the check.
    """
    refused: set[str] = set()
    pending = [schema]
    while pending:
        item = pending.pop()
        if isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, dict):
            pending.extend(item.values())
            if "__loader__" in item:
                refused.update(_refused_node(item))
    return sorted(refused)


def _refused_node(node: dict[str, Any]) -> list[str]:
    loader, module, name = node["__loader__"], node.get("__module__"), node.get("__class__")
    if not isinstance(loader, str) or loader not in SKOPS_LOADERS:
        return [f"{_short(module)}.{_short(name)} (as a {_short(loader)}, a node kind that is not loaded)"]
    # A dotted class name would make the same full name from another module and attribute split.
    if not isinstance(module, str) or not isinstance(name, str) or "." in name:
        return [f"{_short(module)}.{_short(name)}"]
    names = [f"{module}.{name}"]
    if loader == "RandomGeneratorNode":
        # skops builds the bit generator named inside the state: that name is a type too.
        names.append(f"numpy.random.{_short(_bit_generator_name(node))}")
    return [n for n in names if n not in ALLOWED_TYPES]


def _bit_generator_name(node: dict[str, Any]) -> Any:
    import json

    try:
        return json.loads(node["content"]["bit_generator"]["content"]["bit_generator"]["content"])
    except (KeyError, TypeError, ValueError):
        return None


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:80] + "..."


def _check_trees(pipeline: Any) -> None:
    """Refuse trees whose node indices would be followed out of their arrays.

    scikit-learn walks tree nodes in native code without bounds checks (skops leaves both tree
    types off its default list for that reason): a child index past the end, or not after its
    parent, reads outside the array or loops forever; a feature index past the input's width reads
    outside the row. Every tree in the model is checked against the width its final estimator
    validates inputs to.
    """
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor
    from sklearn.tree._tree import Tree

    final = pipeline[-1]
    width = getattr(final, "n_features_in_", None)
    categorical = getattr(getattr(final, "_bin_mapper", None), "is_categorical_", None)
    for item in _reachable(pipeline):
        problem = None
        if isinstance(item, Tree):
            problem = _tree_problem(item, width)
        elif isinstance(item, TreePredictor):
            problem = _predictor_problem(item, width, categorical)
        elif isinstance(getattr(item, "tree_", None), Tree) and item.tree_.n_features != getattr(item, "n_features_in_", None):
            problem = f"a {type(item).__name__} whose tree has {item.tree_.n_features} features, not its n_features_in_"
        if problem:
            raise ModelLoadError(f"sklearn model file holds a corrupt tree: {problem}")


def _reachable(root: Any) -> list[Any]:
    """Every object reachable from the pipeline through attributes, containers and object arrays."""
    import numpy as np

    seen: set[int] = set()
    found = []
    pending = [root]
    while pending:
        item = pending.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        found.append(item)
        if isinstance(item, np.ndarray):
            if item.dtype == object:
                pending.extend(item.ravel().tolist())
        elif isinstance(item, (list, tuple)):
            pending.extend(item)
        elif isinstance(item, dict):
            pending.extend(item.values())
        elif hasattr(item, "__dict__"):
            pending.extend(vars(item).values())
    return found


def _count(value: Any) -> int | None:
    import numbers

    return int(value) if isinstance(value, numbers.Integral) and not isinstance(value, bool) else None


def _tree_problem(tree: Any, width: Any) -> str | None:
    import numpy as np

    # Checked before any node array is read: the arrays are views of node_count nodes over capacity.
    if not 1 <= tree.node_count <= tree.capacity:
        return f"{tree.node_count} nodes in room for {tree.capacity}"
    if _count(width) is None:
        return "no input width to check its features against"
    left, right, feature = tree.children_left, tree.children_right, tree.feature
    index = np.arange(tree.node_count)
    leaf = left == -1
    if (right[leaf] != -1).any():
        return "a leaf with a right child"
    inner = ~leaf
    limit = min(tree.n_features, _count(width))
    return _inner_node_problem(index[inner], left[inner], right[inner], feature[inner], tree.node_count, limit)


def _inner_node_problem(index: Any, left: Any, right: Any, feature: Any, count: int, width: int) -> str | None:
    if ((left <= index) | (left >= count) | (right <= index) | (right >= count)).any():
        return "a child index outside the tree or not after its parent"
    if ((feature < 0) | (feature >= width)).any():
        return f"a split on a feature outside the {width} input columns"
    return None


def _predictor_problem(predictor: Any, width: Any, categorical: Any) -> str | None:
    import numpy as np
    from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE

    nodes = getattr(predictor, "nodes", None)
    if not isinstance(nodes, np.ndarray) or nodes.dtype != PREDICTOR_RECORD_DTYPE or nodes.ndim != 1 or not len(nodes):
        return "histogram-gradient-boosting nodes that are not a non-empty node array"
    limit = _count(width)
    if limit is None:
        return "no input width to check its features against"
    inner = nodes["is_leaf"] == 0
    problem = _inner_node_problem(np.arange(len(nodes))[inner], nodes["left"][inner].astype(np.int64),
                                  nodes["right"][inner].astype(np.int64), nodes["feature_idx"][inner], len(nodes), limit)
    if problem:
        return problem
    splits = nodes[inner & (nodes["is_categorical"] != 0)]
    if not len(splits):
        return None
    bitsets = getattr(predictor, "raw_left_cat_bitsets", None)
    if not isinstance(bitsets, np.ndarray) or bitsets.ndim != 2 or bitsets.shape[1] != 8:
        return "categorical splits without their category bitsets"
    if not isinstance(categorical, np.ndarray) or categorical.shape != (limit,):
        return "categorical splits in a model without categorical features"
    if (splits["bitset_idx"] >= len(bitsets)).any() or not categorical[splits["feature_idx"]].all():
        return "a categorical split on a feature that is not categorical or past its bitsets"
    return None
