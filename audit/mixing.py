"""Mixing across inferred groups inside a class (LISA's intra-label selective augmentation).

Reweighting alone shows the model the same few rare samples again and again: it
memorises them and keeps its shortcut (on Colored MNIST at 1% conflicting,
sampling with the TRUE groups stops near 0.68 worst-group accuracy). LISA (Yao
et al., ICML 2022) instead mixes each sample with one of the same label from
another domain: x = lam * x_i + (1 - lam) * x_j, lam ~ Beta(2, 2). The mixed
images span the whole range between the groups with the label unchanged, so the
feature that told the groups apart (the shortcut) no longer predicts the label.
LISA needs domain labels; here the groups are inferred without labels: the
error set of an early snapshot of the model (JTT's), which holds the samples the
shortcut gets wrong.
"""
from __future__ import annotations

import numpy as np
import torch


class GroupMixer:
    """Draws, for each sample of a batch, a partner of the same class from the other inferred group."""

    def __init__(self, labels: np.ndarray, groups: np.ndarray, probability: float, alpha: float = 2.0):
        self.labels, self.groups = np.asarray(labels), np.asarray(groups).astype(np.int64)
        self.probability, self.alpha = probability, alpha
        self.pools = {(int(c), int(g)): np.flatnonzero((self.labels == c) & (self.groups == g))
                      for c in np.unique(self.labels) for g in (0, 1)}

    def partners(self, idx: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(rows of the batch to mix, their partners' dataset indices); a class with one group mixes nothing."""
        chosen = np.flatnonzero(rng.random(len(idx)) < self.probability)
        rows, partners = [], []
        for row in chosen:
            pool = self.pools[(int(self.labels[idx[row]]), 1 - int(self.groups[idx[row]]))]
            if len(pool):
                rows.append(row)
                partners.append(pool[rng.integers(len(pool))])
        return np.asarray(rows, dtype=np.int64), np.asarray(partners, dtype=np.int64)

    def mix(self, x: torch.Tensor, rows: np.ndarray, partner_x: torch.Tensor,
            rng: np.random.Generator) -> torch.Tensor:
        """x with rows replaced by lam * x + (1 - lam) * partner, lam ~ Beta(alpha, alpha) per row."""
        if not len(rows):
            return x
        lam = torch.as_tensor(rng.beta(self.alpha, self.alpha, size=len(rows)), dtype=x.dtype, device=x.device)
        lam = lam.view(-1, 1, 1, 1)
        at = torch.as_tensor(rows, device=x.device)
        x = x.clone()
        x[at] = lam * x[at] + (1 - lam) * partner_x
        return x
