"""Model directories: weights + config + package version, written atomically.

MODEL_DIR/
  config.json            model and training config, package version, epochs done
  model.pt               final (latest) weights
  history.json           per-epoch loss parts, accuracy, timing
  checkpoints/epoch-NNNN.pt   full state (weights, optimizer) after each epoch
"""
from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from . import __version__
from .errors import ModelError
from .models import ModelConfig, build_model


def atomic_write_bytes(path: Path, write) -> None:
    """Call write(file) on a temp file beside `path`, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, lambda f: f.write(json.dumps(obj, indent=2, default=_jsonable).encode()))


def _jsonable(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def checkpoint_path(model_dir: Path, epoch: int) -> Path:
    return Path(model_dir) / "checkpoints" / f"epoch-{epoch:04d}.pt"


def save_epoch(model_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int,
               train_config: dict, history: list[dict]) -> None:
    model_dir = Path(model_dir)
    cfg: ModelConfig = model.cfg
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
             "model_config": cfg.to_dict(), "train_config": train_config, "history": history,
             "version": __version__}
    atomic_write_bytes(checkpoint_path(model_dir, epoch), lambda f: torch.save(state, f))
    weights = {"model": model.state_dict(), "model_config": cfg.to_dict(), "version": __version__}
    atomic_write_bytes(model_dir / "model.pt", lambda f: torch.save(weights, f))
    write_json(model_dir / "history.json", history)
    # config.json last: its epochs_completed is the commit point of the epoch.
    write_json(model_dir / "config.json", {"model": cfg.to_dict(), "training": train_config,
                                           "version": __version__, "epochs_completed": epoch})


def latest_checkpoint(model_dir: Path) -> Path | None:
    found = sorted((Path(model_dir) / "checkpoints").glob("epoch-*.pt"))
    return found[-1] if found else None


def _read_state(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a foreign or truncated file
        raise ModelError(f"{path} is not a readable debias checkpoint ({type(exc).__name__}); "
                         f"retrain or point --model at a directory written by `debias train`") from exc
    if not isinstance(state, dict) or "model" not in state or "model_config" not in state:
        raise ModelError(f"{path} was not written by debias (no model config inside); "
                         f"point --model at a directory written by `debias train`")
    if state.get("version") != __version__:
        warnings.warn(f"{path} was written by debias {state.get('version')}, this is {__version__}; "
                      f"results may differ", stacklevel=3)
    return state


def model_from_state(state: dict, source: Path) -> nn.Module:
    try:
        cfg = ModelConfig(**state["model_config"])
    except TypeError as exc:
        raise ModelError(f"{source} holds an unknown model config ({exc}); it is from another "
                         f"architecture or debias version") from exc
    model = build_model(cfg)
    weights = state["model"]
    if cfg.decoder == "adversarial" and not any(k.startswith("picture_decoder.") for k in weights):
        # Written before the picture decoder was its own: the one decoder was the adversarially trained one.
        weights = {**weights, **{"picture_" + k: v for k, v in weights.items() if k.startswith("decoder.")}}
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise ModelError(f"{source} does not match the {cfg.method} architecture ({first})") from exc
    return model


def load_model(model_dir: str | Path, device: torch.device | None = None) -> tuple[nn.Module, dict]:
    """Load MODEL_DIR's final weights; returns (model in eval mode, config.json contents)."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelError(f"no such model directory: {model_dir}")
    weights = model_dir / "model.pt"
    if not weights.is_file():
        raise ModelError(f"{model_dir} has no model.pt; is it a directory written by `debias train`?")
    state = _read_state(weights)
    model = model_from_state(state, weights)
    meta = {}
    if (model_dir / "config.json").is_file():
        meta = json.loads((model_dir / "config.json").read_text())
    model.to(device or torch.device("cpu")).eval()
    return model, meta


def load_training_state(path: Path) -> dict:
    return _read_state(path)
