"""PyTorch flavor: a built-in tabular MLP or any nn.Module, resumable from per-epoch checkpoints.

On disk: `torch.save` of plain data only (state_dict, architecture spec,
preprocessing statistics), always read back with `weights_only=True`.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import json
import logging
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from airflow_mlops.errors import ModelLoadError, TrainingError
from airflow_mlops.training.base import FitContext, import_object
from airflow_mlops.training.threads import machine_threads

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

log = logging.getLogger(__name__)
BUILTIN = "airflow_mlops.training.torch_flavor.TabularMLP"
TRAINING_KEYS = {"epochs", "batch_size", "learning_rate", "weight_decay", "patience", "module_params"}


class TabularMLP(nn.Module):
    """Fully connected layers with ReLU and dropout: a solid default for standardised tabular data."""

    def __init__(self, n_inputs: int, n_outputs: int, hidden_sizes: list[int] | tuple[int, ...] = (64, 32), dropout: float = 0.1) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_inputs
        for size in hidden_sizes:
            layers += [nn.Linear(width, int(size)), nn.ReLU(), nn.Dropout(float(dropout))]
            width = int(size)
        layers.append(nn.Linear(width, n_outputs))
        self.layers = nn.Sequential(*layers)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.layers(inputs)


def pick_device(setting: str) -> torch.device:
    if setting == "cuda" and not torch.cuda.is_available():
        raise TrainingError("model.device is cuda but no CUDA device is available")
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)


def _to_bytes(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _numeric_values(data: pd.DataFrame, numeric: list[str]) -> np.ndarray:
    """The numeric columns as one float32 matrix; a frame of exactly those columns is not re-selected first."""
    frame = data if list(data.columns) == numeric else data[numeric]
    return frame.to_numpy(dtype="float32")


def _describe(exc: BaseException) -> str:
    """The exception's kind and first line, cut short: messages can quote the file's own content."""
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return text if len(text) <= 300 else text[:300] + "..."


def _from_bytes(data: bytes) -> Any:
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


class TorchTrainer:
    flavor = "torch"
    model_file = "model.pt"

    def __init__(self, module: nn.Module | None = None, architecture: dict[str, Any] | None = None,
                 preprocess: dict[str, Any] | None = None) -> None:
        self.module = module
        self.architecture = architecture or {}
        self.preprocess = preprocess or {}

    # ----------------------------------------------------------- preprocessing

    def _fit_matrix(self, train: pd.DataFrame, y: np.ndarray, context: FitContext) -> torch.Tensor:
        """Learn the standardisation and build the training matrix in the same passes over the data."""
        import numpy as np

        spec = context.spec
        self.preprocess = {
            "numeric": spec.numeric, "means": {}, "stds": {},
            "categorical": spec.categorical, "categories": {c: spec.categories[c] for c in spec.categorical},
            "task": context.task,
        }
        if context.task == "regression":
            self.preprocess["y_mean"] = float(y.mean())
            self.preprocess["y_std"] = float(y.std()) or 1.0
        if not spec.numeric:
            return self._matrix(train)
        values = _numeric_values(train, spec.numeric)
        if np.isnan(values).any():
            with np.errstate(all="ignore"):
                means = np.nan_to_num(np.nanmean(values, axis=0, dtype="float64"), nan=0.0)
                stds = np.nan_to_num(np.nanstd(values, axis=0, dtype="float64"), nan=1.0)
            self._set_scaling(spec.numeric, means, stds)
            return self._matrix(train, values)
        # In place on our own float32 copy (never a view of the caller's frame): mean, centre, spread,
        # scale. Sums accumulate in float64 without a float64 copy, in no more passes than np.std takes.
        values = np.ascontiguousarray(values)
        if not values.flags.owndata:
            values = values.copy()
        means = values.sum(axis=0, dtype="float64") / len(values)
        np.subtract(values, means.astype("float32"), out=values)
        squares = np.zeros(values.shape[1], dtype="float64")
        for start in range(0, len(values), 65_536):
            squares += np.square(values[start : start + 65_536]).sum(axis=0, dtype="float64")
        self._set_scaling(spec.numeric, means, np.sqrt(squares / len(values)))
        np.divide(values, np.asarray(list(self.preprocess["stds"].values()), dtype="float32"), out=values)
        if not spec.categorical:
            return torch.from_numpy(values)
        matrix = np.zeros((len(values), self._width()), dtype=np.float32)
        matrix[:, : len(spec.numeric)] = values
        self._one_hot(train, matrix)
        return torch.from_numpy(matrix)

    def _set_scaling(self, columns: list[str], means: np.ndarray | None, stds: np.ndarray) -> None:
        if means is not None:
            self.preprocess["means"] = {c: float(m) for c, m in zip(columns, means, strict=True)}
        self.preprocess["stds"] = {c: float(s) or 1.0 for c, s in zip(columns, stds, strict=True)}

    def _width(self) -> int:
        p = self.preprocess
        return len(p["numeric"]) + sum(len(p["categories"][c]) for c in p["categorical"])

    def _matrix(self, data: pd.DataFrame, numeric_values: np.ndarray | None = None) -> torch.Tensor:
        import numpy as np

        p = self.preprocess
        matrix = np.zeros((len(data), self._width()), dtype=np.float32)  # filled in place: no per-column blocks
        numeric = p["numeric"]
        if numeric:
            means = np.asarray([p["means"][c] for c in numeric], dtype=np.float32)
            stds = np.asarray([p["stds"][c] for c in numeric], dtype=np.float32)
            block = matrix[:, : len(numeric)]
            raw = numeric_values if numeric_values is not None else _numeric_values(data, numeric)
            np.subtract(raw, means, out=block)
            np.divide(block, stds, out=block)
            np.nan_to_num(block, copy=False, nan=0.0)
        self._one_hot(data, matrix)
        return torch.from_numpy(matrix)

    def _one_hot(self, data: pd.DataFrame, matrix: np.ndarray) -> None:
        """Categorical columns as indicator columns after the numeric block (unknown values: all zero)."""
        import numpy as np
        import pandas as pd

        p = self.preprocess
        offset = len(p["numeric"])
        for column in p["categorical"]:
            categories = p["categories"][column]
            codes = pd.Categorical(data[column], categories=categories).codes
            known = codes >= 0
            matrix[np.flatnonzero(known), offset + codes[known]] = 1.0
            offset += len(categories)

    # ----------------------------------------------------------------- training

    def _build(self, n_inputs: int, n_outputs: int, context: FitContext) -> nn.Module:
        params = context.params
        path = context.estimator or BUILTIN
        if path == BUILTIN:
            module_params = {k: params[k] for k in ("hidden_sizes", "dropout") if k in params}
        else:
            module_params = dict(params.get("module_params", {}))
        module_class = import_object(path, "model.estimator")
        if not (isinstance(module_class, type) and issubclass(module_class, nn.Module)):
            raise TrainingError(f"model.estimator {path!r} is not a torch.nn.Module subclass")
        try:
            module = module_class(n_inputs, n_outputs, **module_params)
        except TypeError as exc:
            raise TrainingError(f"{path} cannot be built as {path}(n_inputs, n_outputs, **{module_params}): {exc}") from None
        self.architecture = {"module": path, "n_inputs": n_inputs, "n_outputs": n_outputs, "module_params": module_params}
        return module

    def fit(self, train: pd.DataFrame, y_train: np.ndarray, validation: pd.DataFrame | None,
            y_validation: np.ndarray | None, context: FitContext) -> dict[str, Any]:
        params = context.params
        epochs = int(params.get("epochs", 50))
        batch_size = int(params.get("batch_size", 128))
        patience = int(params.get("patience", 10))
        device = pick_device(context.device)
        torch.manual_seed(context.seed)
        torch.set_num_threads(machine_threads())

        x_train = self._fit_matrix(train, y_train, context)
        regression = context.task == "regression"
        n_outputs = 1 if regression else context.n_classes
        y_tensor = self._targets(self._scaled(y_train), regression)
        module = self._build(x_train.shape[1], n_outputs, context).to(device)
        optimizer = torch.optim.Adam(module.parameters(), lr=float(params.get("learning_rate", 1e-3)),
                                     weight_decay=float(params.get("weight_decay", 0.0)))
        loss_fn = nn.MSELoss() if regression else nn.CrossEntropyLoss()
        x_val = self._matrix(validation).to(device) if validation is not None else None
        y_val = self._targets(self._scaled(y_validation), regression).to(device) if validation is not None else None
        generator = torch.Generator().manual_seed(context.seed)
        state = {"epoch": 0, "best_loss": float("inf"), "best_state": None, "bad_epochs": 0}
        checkpoints = context.store is not None and context.checkpoint_prefix is not None
        identity = self._identity(x_train, y_tensor, params, context.seed) if checkpoints else ""
        state = self._resume(context, identity, module, optimizer, generator, state)

        for epoch in range(state["epoch"], epochs):
            module.train()
            order = torch.randperm(len(x_train), generator=generator)
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                optimizer.zero_grad()
                out = module(x_train[batch].to(device))
                loss = loss_fn(out.squeeze(-1) if regression else out, y_tensor[batch].to(device))
                loss.backward()
                optimizer.step()
            module.eval()
            if x_val is None:
                # No validation split: no early stopping, and no extra pass over the training data.
                state["epoch"] = epoch + 1
                self._checkpoint(context, identity, module, optimizer, generator, state)
                continue
            with torch.no_grad():
                out = module(x_val)
                monitored = float(loss_fn(out.squeeze(-1) if regression else out, y_val))
            if context.on_round is not None:
                context.on_round(epoch, monitored)
            if monitored < state["best_loss"] - 1e-7:
                state.update(best_loss=monitored, bad_epochs=0,
                             best_state={k: v.detach().cpu().clone() for k, v in module.state_dict().items()})
            else:
                state["bad_epochs"] += 1
            state["epoch"] = epoch + 1
            self._checkpoint(context, identity, module, optimizer, generator, state)
            if state["bad_epochs"] >= patience:
                log.info("early stopping after epoch %d (best loss %.5f)", epoch + 1, state["best_loss"])
                break
        if state["best_state"] is not None:
            module.load_state_dict(state["best_state"])
        self.module = module.to("cpu").eval()
        best = state["best_loss"] if state["best_loss"] != float("inf") else None
        return {"epochs_run": state["epoch"], "best_loss": best, "device": str(device)}

    def _scaled(self, y: np.ndarray) -> np.ndarray:
        if self.preprocess.get("task") != "regression":
            return y
        return (y - self.preprocess["y_mean"]) / self.preprocess["y_std"]

    @staticmethod
    def _targets(y: np.ndarray, regression: bool) -> torch.Tensor:
        return torch.as_tensor(y, dtype=torch.float32) if regression else torch.as_tensor(y, dtype=torch.long)

    def _identity(self, x: torch.Tensor, y: torch.Tensor, params: dict[str, Any], seed: int) -> str:
        digest = hashlib.sha256(x.numpy().tobytes())
        digest.update(y.numpy().tobytes())
        digest.update(json.dumps([params, seed, self.architecture], sort_keys=True, default=str).encode())
        return digest.hexdigest()

    def _checkpoint(self, context: FitContext, identity: str, module: nn.Module, optimizer: Any,
                    generator: torch.Generator, state: dict[str, Any]) -> None:
        if context.store is None or context.checkpoint_prefix is None:
            return
        payload = {
            "identity": identity, "state": {k: v for k, v in state.items() if k != "best_state"},
            "best_state": state["best_state"], "module": module.state_dict(), "optimizer": optimizer.state_dict(),
            "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
        }
        context.store.write_bytes(f"{context.checkpoint_prefix.rstrip('/')}/checkpoint.pt", _to_bytes(payload))

    def _resume(self, context: FitContext, identity: str, module: nn.Module, optimizer: Any,
                generator: torch.Generator, state: dict[str, Any]) -> dict[str, Any]:
        if context.store is None or context.checkpoint_prefix is None:
            return state
        path = f"{context.checkpoint_prefix.rstrip('/')}/checkpoint.pt"
        if not context.store.exists(path):
            return state
        payload = _from_bytes(context.store.read_bytes(path))
        if payload.get("identity") != identity:
            log.info("ignoring the checkpoint at %s: it belongs to other data or params", path)
            return state
        module.load_state_dict(payload["module"])
        optimizer.load_state_dict(payload["optimizer"])
        generator.set_state(payload["generator"])
        torch.set_rng_state(payload["torch_rng"])
        resumed = {**payload["state"], "best_state": payload["best_state"]}
        log.info("resuming training from the checkpoint after epoch %d", resumed["epoch"])
        return resumed

    # ---------------------------------------------------------------- scoring

    def _forward(self, data: pd.DataFrame) -> torch.Tensor:
        with torch.no_grad():
            return self.module(self._matrix(data))

    def predict(self, data: pd.DataFrame) -> np.ndarray:
        out = self._forward(data).squeeze(-1).numpy().astype("float64")
        return out * self.preprocess["y_std"] + self.preprocess["y_mean"]

    def predict_proba(self, data: pd.DataFrame) -> np.ndarray:
        proba = torch.softmax(self._forward(data).double(), dim=1).numpy()
        return proba / proba.sum(axis=1, keepdims=True)

    def save(self) -> bytes:
        return _to_bytes({"architecture": self.architecture, "preprocess": self.preprocess,
                          "state_dict": self.module.state_dict()})

    @classmethod
    def load(cls, data: bytes, metadata: dict[str, Any]) -> TorchTrainer:
        try:
            payload = _from_bytes(data)
        except Exception as exc:  # weights_only refuses any global it does not know; any failure is a bad file
            raise ModelLoadError(f"torch model file could not be read with weights_only=True: {_describe(exc)}") from None
        try:
            architecture, preprocess, state_dict = payload["architecture"], payload["preprocess"], payload["state_dict"]
            path, n_inputs, n_outputs = architecture["module"], architecture["n_inputs"], architecture["n_outputs"]
            module_params = architecture["module_params"]
        except (KeyError, TypeError) as exc:
            raise ModelLoadError(f"torch model file lacks a field: {_describe(exc)}") from None
        if not (isinstance(n_inputs, int) and isinstance(n_outputs, int) and isinstance(module_params, dict)
                and isinstance(preprocess, dict) and isinstance(state_dict, dict)):
            raise ModelLoadError("torch model file holds the wrong kind of value for its sizes, params, preprocessing or weights")
        try:
            module_class = TabularMLP if path == BUILTIN else import_object(str(path), "model architecture")
        except TrainingError as exc:
            raise ModelLoadError(f"torch model file: {exc}") from None
        # Only a module class is ever called: a path naming a function (os.system, subprocess.run) is refused.
        if not (inspect.isclass(module_class) and issubclass(module_class, nn.Module)):
            raise ModelLoadError(f"torch model file names {str(path)[:200]!r} as its module, which is not an nn.Module class")
        try:
            module = module_class(n_inputs, n_outputs, **module_params)
            module.load_state_dict(state_dict)
        except (TypeError, ValueError, RuntimeError, KeyError) as exc:
            raise ModelLoadError(f"torch model file does not fit {path}: {_describe(exc)}") from None
        return cls(module.eval(), architecture, preprocess)

    def library_versions(self) -> dict[str, str]:
        return {"torch": torch.__version__}
