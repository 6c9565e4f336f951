"""The validation split held out of training, and what is measured on it after every epoch."""
from __future__ import annotations

import numpy as np
import torch

from .inference import predict

VAL_FRACTION = 0.1     # the default of TrainConfig.val_fraction, --val-fraction and the API's val_fraction
MAX_VAL_FRACTION = 0.5


def validation_split(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """True for the samples held out for validation: floor(fraction * n) of each class, drawn from the seed.

    With fraction <= 0.5 every class keeps at least half of its samples for training.
    """
    held_out = np.zeros(len(labels), dtype=bool)
    if fraction <= 0:
        return held_out
    rng = np.random.default_rng([seed, 0x7A1])  # its own stream: the split does not shift the batches' draws
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        held_out[rng.permutation(members)[:int(fraction * len(members))]] = True
    return held_out


def validation_metrics(model, images: np.ndarray, labels: np.ndarray, held_out: np.ndarray,
                       errors: np.ndarray | None, device: torch.device) -> dict:
    """The held-out samples' classification loss (BCE), accuracy, worst class accuracy and, once the error set
    is taken, the accuracy on its held-out members and on the worst group it infers (class x error set):
    stand-ins for the worst group that need no group labels."""
    idx = np.flatnonzero(held_out)
    logit = torch.from_numpy(predict(model, images, device, want_recon_error=False, indices=idx)["logit"])
    y = labels[idx]
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logit, torch.from_numpy(y).float()).item()
    right = (logit.numpy() > 0).astype(np.int64) == y
    out = {"val_bce": bce, "val_accuracy": float(right.mean()),
           "val_worst_class_accuracy": float(min(right[y == c].mean() for c in np.unique(y)))}
    if errors is not None and errors[idx].any():
        flagged = errors[idx] > 0
        out["val_error_set_accuracy"] = float(right[flagged].mean())
        # JTT's inferred groups (class x in the error set): the worst of them, as group labels would give it.
        cells = [(y == c) & (flagged == f) for c in np.unique(y) for f in (False, True)]
        out["val_worst_inferred_group_accuracy"] = float(min(right[m].mean() for m in cells if m.any()))
    return out
