"""XGBoost flavor: native training with early stopping, categorical features, UBJ on disk."""

from __future__ import annotations

import os
import struct
import threading
from typing import TYPE_CHECKING, Any

from airflow_mlops.errors import ModelLoadError, TrainingError
from airflow_mlops.training.base import FitContext, PendingPrediction
from airflow_mlops.training.threads import machine_threads

if TYPE_CHECKING:
    from collections.abc import Sequence
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    import pandas as pd

ALIASES = {"learning_rate": "eta", "n_estimators": None, "early_stopping_rounds": None, "random_state": "seed"}
PIECE_ROWS = 32_768  # at most: its row-major copy stays in cache
MIN_PIECE_ROWS = 4_096  # at least: a call costs about 0.1 ms, as much as predicting 80 rows (200 trees)
_POOL: tuple[int, ThreadPoolExecutor] | None = None
_POOL_LOCK = threading.Lock()


def _piece_bounds(rows: int, threads: int) -> list[tuple[int, int]]:
    """Guided: pieces shrink towards the end of a call, so that its threads finish together."""
    bounds, start = [], 0
    while start < rows:
        size = min(PIECE_ROWS, max(MIN_PIECE_ROWS, -(-(rows - start) // (2 * threads))))
        bounds.append((start, min(rows, start + size)))
        start += size
    return bounds or [(0, 0)]


def _piece_pool() -> ThreadPoolExecutor:
    """One prediction thread per core, per process (a forked child starts its own)."""
    global _POOL
    from concurrent.futures import ThreadPoolExecutor

    with _POOL_LOCK:
        if _POOL is None or _POOL[0] != os.getpid():
            _POOL = (os.getpid(), ThreadPoolExecutor(machine_threads(), thread_name_prefix="xgboost-piece"))
        return _POOL[1]


class XGBoostTrainer:
    flavor = "xgboost"
    model_file = "model.ubj"

    def __init__(self, booster: Any = None, categories: dict[str, list[Any]] | None = None, best_iteration: int | None = None) -> None:
        self.booster = booster
        self.categories = categories or {}
        self.best_iteration = best_iteration

    def _matrix(self, data: pd.DataFrame, label: np.ndarray | None = None) -> Any:
        import pandas as pd
        import xgboost as xgb

        frame = data.copy() if self.categories else data  # a copy only when columns change type
        for column, values in self.categories.items():
            frame[column] = pd.Categorical(frame[column], categories=values)
        return xgb.DMatrix(frame, label=label, enable_categorical=True, nthread=machine_threads())

    def fit(self, train: pd.DataFrame, y_train: np.ndarray, validation: pd.DataFrame | None,
            y_validation: np.ndarray | None, context: FitContext) -> dict[str, Any]:
        import xgboost as xgb

        self.categories = {c: context.spec.categories[c] for c in context.spec.categorical}
        params = dict(context.params)
        rounds = int(params.pop("n_estimators", params.pop("num_boost_round", 100)))
        early = params.pop("early_stopping_rounds", 20)
        booster_params: dict[str, Any] = {"tree_method": "hist", "nthread": machine_threads(), "seed": context.seed}
        if context.task == "binary_classification":
            booster_params.update(objective="binary:logistic", eval_metric="logloss")
        elif context.task == "multiclass_classification":
            booster_params.update(objective="multi:softprob", num_class=context.n_classes, eval_metric="mlogloss")
        else:
            booster_params.update(objective="reg:squarederror", eval_metric="rmse")
        for key, value in params.items():
            booster_params[ALIASES.get(key) or key] = value
        train_matrix = self._matrix(train, y_train)
        # Only the validation split is evaluated per round: scoring the training set every round costs ~10%.
        evals = [(self._matrix(validation, y_validation), "validation")] if validation is not None else []
        callbacks = [_round_reporter(context.on_round)] if context.on_round is not None and evals else None
        try:
            self.booster = xgb.train(
                booster_params, train_matrix, num_boost_round=rounds, evals=evals,
                early_stopping_rounds=early if validation is not None and early else None, verbose_eval=False,
                callbacks=callbacks,
            )
        except xgb.core.XGBoostError as exc:
            raise TrainingError(f"XGBoost could not train with model.params {context.params}: {str(exc).splitlines()[0]}") from None
        best = getattr(self.booster, "best_iteration", None)
        self.best_iteration = int(best) if best is not None and validation is not None and early else None
        return {"num_boost_round": rounds, "best_iteration": self.best_iteration, "nthread": machine_threads()}

    def _raw(self, data: pd.DataFrame) -> np.ndarray:
        return self.booster.predict(self._matrix(data), iteration_range=self._iteration_range())

    def predict(self, data: pd.DataFrame) -> np.ndarray:
        return self._raw(data)

    def predict_proba(self, data: pd.DataFrame) -> np.ndarray:
        import numpy as np

        raw = self._raw(data)
        return np.column_stack([1.0 - raw, raw]) if raw.ndim == 1 else raw

    def contributions(self, data: pd.DataFrame) -> np.ndarray:
        """TreeSHAP values from XGBoost itself: rows x [classes x] (features + the bias last), in margin units."""
        return self.booster.predict(self._matrix(data), pred_contribs=True, iteration_range=self._iteration_range())

    def predict_proba_columns(self, columns: Sequence[np.ndarray]) -> np.ndarray:
        """Probabilities (or values, for regression) of numeric feature columns in feature order."""
        return self.start_proba_columns(columns).result()

    def start_proba_columns(self, columns: Sequence[np.ndarray]) -> PendingPrediction:
        """Start predicting numeric feature columns in feature order; `result()` gives what
        `predict_proba_columns` returns.

        Predicted in pieces of at most `PIECE_ROWS` rows on one thread per core, each piece by a single-threaded
        copy of the booster. XGBoost's own threads split a call evenly, so whenever another thread of the
        process takes a core (batch inference reads and writes beside the prediction), the other XGBoost
        thread waits at the barrier; pieces from a shared pool keep every core busy. A piece's row-major
        copy fits in cache. Pieces queue in the order they are started, so a caller that starts the next
        batch before waiting on this one keeps the cores busy across the boundary.
        """
        import numpy as np

        booster = self._single_threaded_booster()
        limit = self._iteration_range()
        rows = len(columns[0])
        # Binary: each piece fills its rows of both class columns, column-major so that each goes to
        # Arrow without a copy.
        proba = np.empty((rows, 2), dtype=np.float32, order="F") if self._objective() == "binary:logistic" else None

        def piece(bounds: tuple[int, int]) -> np.ndarray | None:
            start, stop = bounds
            matrix = np.empty((stop - start, len(columns)), dtype=np.float32)
            for position, column in enumerate(columns):
                matrix[:, position] = column[start:stop]
            raw = booster.inplace_predict(matrix, iteration_range=limit)
            if proba is None:
                return raw
            proba[start:stop, 1] = raw
            np.subtract(1.0, raw, out=proba[start:stop, 0])
            return None

        pool = _piece_pool()
        futures = [pool.submit(piece, bounds) for bounds in _piece_bounds(rows, machine_threads())]
        return PendingPrediction(futures, lambda pieces: proba if proba is not None else np.concatenate(pieces))

    def _iteration_range(self) -> tuple[int, int]:
        return (0, self.best_iteration + 1) if self.best_iteration is not None else (0, 0)

    def _single_threaded_booster(self) -> Any:
        """`nthread` belongs to a booster, and the DataFrame predict path keeps every core."""
        source, copy = getattr(self, "_single_threaded", (None, None))
        if source is not self.booster:
            copy = self.booster.copy()
            copy.set_param({"nthread": 1})
            self._single_threaded = (self.booster, copy)
        return copy

    def _objective(self) -> str:
        if getattr(self, "_objective_name", None) is None:
            import json

            self._objective_name = json.loads(self.booster.save_config())["learner"]["objective"]["name"]
        return self._objective_name

    def save(self) -> bytes:
        return bytes(self.booster.save_raw(raw_format="ubj"))

    @classmethod
    def load(cls, data: bytes, metadata: dict[str, Any]) -> XGBoostTrainer:
        import xgboost as xgb

        # XGBoost's parser aborts the process on empty input and segfaults on a truncated length, and
        # its predictions follow node indices unchecked (xgboost 3.2): only a whole UBJSON document
        # whose trees stay inside their arrays reaches it.
        check_trees(decode_ubjson(data))
        booster = xgb.Booster()
        try:
            booster.load_model(bytearray(data))
        except (xgb.core.XGBoostError, ValueError) as exc:  # ValueError: UnicodeDecodeError in feature names
            raise ModelLoadError(f"xgboost model file is not a valid model: {_first_line(exc)}") from None
        expected = len(metadata["features"]["features"])
        if booster.num_features() != expected:
            raise ModelLoadError(f"xgboost model file holds a model of {booster.num_features()} features, "
                                 f"its metadata lists {expected}")
        booster.set_param({"nthread": machine_threads()})
        categories = {c: metadata["features"]["categories"][c] for c in metadata["features"]["categories"]}
        return cls(booster, categories, metadata.get("info", {}).get("best_iteration"))

    def library_versions(self) -> dict[str, str]:
        import xgboost

        return {"xgboost": xgboost.__version__}


_HIGHER_IS_BETTER = {"auc", "aucpr", "map", "ndcg", "pre"}  # xgboost eval metrics; the rest are losses


def _round_reporter(on_round: Any) -> Any:
    """An xgboost callback handing `on_round` each round's validation loss: the last eval metric (the one
    early stopping watches), negated when it is a score."""
    import xgboost as xgb

    class RoundReporter(xgb.callback.TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: dict[str, Any]) -> bool:
            name, history = list(evals_log["validation"].items())[-1]
            value = float(history[-1])
            on_round(epoch, -value if name.split("@")[0] in _HIGHER_IS_BETTER else value)
            return False

    return RoundReporter()


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= 300 else text[:300] + "..."


_INTEGERS = {"i": ">i1", "U": ">u1", "I": ">i2", "l": ">i4", "L": ">i8"}
_NUMBERS = {**_INTEGERS, "d": ">f4", "D": ">f8"}
# Scalars by marker byte, unpacked in place: a model holds thousands of them.
_SCALARS = {ord(m): struct.Struct(f">{c}") for m, c in {"i": "b", "U": "B", "I": "h", "l": "i", "L": "q", "d": "f", "D": "d"}.items()}
_LENGTHS = {ord(m): _SCALARS[ord(m)] for m in _INTEGERS}
_CONSTANTS = {"T": True, "F": False, "Z": None}
_CLOSING = {"[": ord("]"), "{": ord("}")}
_NO_OP = ord("N")
MAX_NESTING = 32  # an XGBoost model nests 6 deep
NO_PARENT = 2147483647  # what XGBoost writes as the root's parent


class _UbjsonReader:
    """Decodes UBJSON, checking every length against the bytes that are left before reading it."""

    def __init__(self, data: bytes) -> None:
        self.data, self.position = data, 0

    def _truncated(self, size: int) -> ModelLoadError:
        return ModelLoadError(f"xgboost model file is truncated or corrupt: a value at byte {self.position} needs "
                              f"{size} bytes, {len(self.data) - self.position} are left")

    def take(self, size: int) -> bytes:
        if self.position + size > len(self.data):
            raise self._truncated(size)
        chunk = self.data[self.position : self.position + size]
        self.position += size
        return chunk

    def peek(self) -> int | None:
        return self.data[self.position] if self.position < len(self.data) else None

    def _marker_byte(self) -> int:
        data, position = self.data, self.position
        while True:
            if position >= len(data):
                raise self._truncated(1)
            byte = data[position]
            position += 1
            self.position = position
            if byte != _NO_OP:  # no-op padding
                return byte

    def marker(self) -> str:
        return chr(self._marker_byte())

    def _scalar(self, unpacker: struct.Struct) -> Any:
        if self.position + unpacker.size > len(self.data):
            raise self._truncated(unpacker.size)
        value = unpacker.unpack_from(self.data, self.position)[0]
        self.position += unpacker.size
        return value

    def number(self, marker: str) -> Any:
        return self._scalar(_SCALARS[ord(marker)])

    def length(self) -> int:
        unpacker = _LENGTHS.get(self._marker_byte())
        if unpacker is None or (value := self._scalar(unpacker)) < 0:
            raise ModelLoadError(f"xgboost model file is not UBJSON: no length at byte {self.position - 1}")
        return value

    def text(self) -> str:
        try:
            return self.take(self.length()).decode()
        except UnicodeDecodeError:
            raise ModelLoadError(f"xgboost model file is not UBJSON: a string before byte {self.position} is not UTF-8") from None

    def value(self, marker: str, depth: int) -> Any:
        import numpy as np

        if marker in _NUMBERS:
            return self.number(marker)
        if marker in _CONSTANTS:
            return _CONSTANTS[marker]
        if marker in "SH":
            return self.text()
        if marker == "C":
            return chr(self.take(1)[0])
        if marker not in _CLOSING or depth >= MAX_NESTING:
            raise ModelLoadError(f"xgboost model file is not UBJSON: {marker!r} at byte {self.position - 1}")
        element_type, count = None, None
        if self.peek() == ord("$"):
            self.take(1)
            element_type = self.marker()
            # Typed constants take no bytes: a lying count would loop for ever on nothing.
            if element_type not in _NUMBERS and element_type not in "SHC" or self.peek() != ord("#"):
                raise ModelLoadError(f"xgboost model file is not UBJSON: a container of {element_type!r} at byte {self.position}")
        if self.peek() == ord("#"):
            self.take(1)
            count = self.length()
        if marker == "[" and element_type in _NUMBERS:
            dtype = np.dtype(_NUMBERS[element_type])
            return np.frombuffer(self.take(count * dtype.itemsize), dtype=dtype)
        items: list[tuple[str | None, Any]] = []
        while len(items) != count:
            if count is None and self.peek() == _CLOSING[marker]:
                self.take(1)
                break
            key = self.text() if marker == "{" else None
            items.append((key, self.value(element_type or self.marker(), depth + 1)))
        return dict(items) if marker == "{" else [item for _, item in items]


def decode_ubjson(data: bytes) -> dict[str, Any]:
    """The model as Python values (numeric arrays as numpy), or ModelLoadError unless it is exactly one object."""
    if not data.startswith(b"{"):
        raise ModelLoadError("xgboost model file is not a UBJSON model: " + ("it is empty" if not data else "it does not start with an object"))
    reader = _UbjsonReader(data)
    model = reader.value(reader.marker(), 0)
    if reader.position != len(data):
        raise ModelLoadError(f"xgboost model file has {len(data) - reader.position} bytes after the model")
    return model


def check_trees(model: dict[str, Any]) -> None:
    """Refuse trees XGBoost would follow out of their arrays: it does not check node indices (xgboost 3.2)."""
    try:
        learner = model["learner"]
        width = int(learner["learner_model_param"]["num_feature"])
        booster = learner["gradient_booster"]
        if booster["name"] == "gblinear":
            return
        trees = (booster["gbtree"] if booster["name"] == "dart" else booster)["model"]["trees"]
        problems = (_tree_problem(tree, width) for tree in trees)
        problem = next((p for p in problems if p), None)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        problem = f"its learner or trees lack a field or hold the wrong kind of value ({type(exc).__name__}: {str(exc)[:100]})"
    if problem:
        raise ModelLoadError(f"xgboost model file holds a corrupt model: {problem}")


def _tree_problem(tree: dict[str, Any], width: int) -> str | None:
    import numpy as np

    count = int(tree["tree_param"]["num_nodes"])
    arrays = {name: np.asarray(tree[name]) for name in ("left_children", "right_children", "parents", "split_indices", "split_type")}
    if count < 1 or any(array.shape != (count,) for array in arrays.values()):
        return f"tree {tree.get('id')} does not hold {count} nodes in each node array"
    left, right, parents, features = (arrays[n].astype(np.int64) for n in ("left_children", "right_children", "parents", "split_indices"))
    visits = np.zeros(count, dtype=np.int64)
    pending = [0]
    while pending:  # from the root, every child once: no index outside the tree, no cycle, no shared node
        node = pending.pop()
        visits[node] += 1
        if visits[node] > 1:
            return f"tree {tree.get('id')} reaches node {node} twice"
        if left[node] == -1 and right[node] == -1:
            continue
        if not (0 <= left[node] < count and 0 <= right[node] < count and 0 <= features[node] < width):
            return f"tree {tree.get('id')} node {node} points outside the tree or the {width} features"
        if parents[left[node]] != node or parents[right[node]] != node:
            return f"tree {tree.get('id')} node {node} is not its children's parent"
        pending += [int(left[node]), int(right[node])]
    if parents[0] != NO_PARENT:
        return f"tree {tree.get('id')} has a parent above its root"
    categorical = np.flatnonzero((arrays["split_type"] != 0) & (visits > 0) & (left != -1))
    if len(categorical):
        nodes, segments, sizes = (np.asarray(tree[n], dtype=np.int64) for n in ("categories_nodes", "categories_segments", "categories_sizes"))
        if not (nodes.shape == segments.shape == sizes.shape) or not np.isin(categorical, nodes).all():
            return f"tree {tree.get('id')} has categorical splits without their categories"
        if ((segments < 0) | (sizes < 0) | (segments + sizes > len(tree["categories"]))).any():
            return f"tree {tree.get('id')} has category ranges outside its categories"
    return None
