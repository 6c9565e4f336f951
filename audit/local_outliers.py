"""Local outlier factor (Breunig et al., SIGMOD 2000) of the latent means, within each class.

A sample's LOF is how much sparser its neighbourhood is than its neighbours' own: ~1 inside a cluster of any
density, above 1 for a sample off the cluster it sits beside. A global density ranks whole sparse clusters
first; on the planted faces the latent space is organised by lighting and pose, and the few dark-skinned faces
sit at the edges of those clusters, not in a sparse region of their own: LOF ranked them at ROC AUC 0.900 /
0.847 / 0.850 (seeds 0-2) where the histogram density gave 0.801 / 0.769 / 0.731 (README, "Debiasing on real
images").

A class of up to EXACT_UP_TO samples gets the exact LOF; in a larger one neighbours are searched among
MAX_REFERENCES of its samples (a fixed random subset), so the cost is linear in N: each sample's k nearest
references by one matrix product per chunk. The reference set matters: on Colored MNIST (~9,000 a class)
2,048 references ranked the conflicting digits at AUC 0.974 / 0.946 (1% / 2%), 4,096 at 0.979 / 0.962;
4,096 for every class cost the 100k audit 0.8 s more (bench/out/debias_bench_discovery*.txt).

k = 50 neighbours: a small k's LOF is noisy (each density is estimated from a few neighbours), and a
minority spread as widely as the majority but off to one side, as the dark faces sit at an edge of the
faces, stands out more with more neighbours. (A tight cluster of more than k samples is found at no k: it
is denser than its surroundings.) On the planted faces (5 seeds, the 60 dark faces among 3,000;
bench/out/rarity_signals_k50.txt) the dark-face AUC of the LOF alone was 0.865 at k = 10, 0.904 at k = 20,
0.916 at 35, 0.918 at 50 and 75, 0.917 at 100 (exact); the audit's score went from 0.896 (k = 20, 2,048
references, every error set counted) to 0.918.
"""
from __future__ import annotations

import numpy as np
import torch

NEIGHBOURS = 50
MAX_REFERENCES = 2048
EXACT_UP_TO = 10_000
CHUNK = 8192


def local_outlier_factor(mu: np.ndarray, labels: np.ndarray, k: int = NEIGHBOURS,
                         max_references: int = MAX_REFERENCES, exact_up_to: int = EXACT_UP_TO) -> np.ndarray:
    """Per sample, its LOF among the latent means of its own class (each dimension standardised)."""
    labels = np.asarray(labels)
    out = np.ones(len(labels))
    for cls in np.unique(labels):
        rows = np.flatnonzero(labels == cls)
        out[rows] = _class_lof(np.asarray(mu[rows], dtype=np.float32), k,
                               len(rows) if len(rows) <= exact_up_to else max_references)
    return out


def _class_lof(x: np.ndarray, k: int, max_references: int) -> np.ndarray:
    n = len(x)
    if n < 3:
        return np.ones(n)
    sd = x.std(0)
    z = torch.from_numpy((x - x.mean(0)) / np.where(sd > 0, sd, 1.0)).float()
    refs = (np.arange(n) if n <= max_references
            else np.sort(np.random.default_rng(0).choice(n, max_references, replace=False)))
    k = min(k, len(refs) - 1)
    as_ref = np.full(n, -1)
    as_ref[refs] = np.arange(len(refs))
    r = z[torch.from_numpy(refs)]
    ref_dist, ref_nn = _neighbours(r, r, k, np.arange(len(refs)))
    k_distance = ref_dist[:, -1]
    ref_lrd = _reachability_density(ref_dist, ref_nn, k_distance)
    dist, nn = _neighbours(z, r, k, as_ref)
    lrd = _reachability_density(dist, nn, k_distance)
    return ref_lrd[nn].mean(1) / lrd


def _neighbours(queries: torch.Tensor, refs: torch.Tensor, k: int, self_index: np.ndarray):
    """(distances, reference indices) of each query's k nearest references, nearest first; a query that is
    itself reference j (self_index[i] == j, else -1) does not count itself."""
    ref_norms = (refs * refs).sum(1)
    dists, idxs = [], []
    for start in range(0, len(queries), CHUNK):
        q = queries[start:start + CHUNK]
        # |r|^2 - 2 q.r in one fused product; |q|^2, the same along a row, is added to the k chosen only
        # (a third off the LOF of the 100k audit).
        partial = torch.addmm(ref_norms, q, refs.T, alpha=-2)
        own = torch.from_numpy(self_index[start:start + len(q)])
        mine = own >= 0
        partial[torch.nonzero(mine).squeeze(1), own[mine]] = float("inf")
        d, i = torch.topk(partial, k, dim=1, largest=False)
        dists.append(d.add_((q * q).sum(1, keepdim=True)).clamp_min_(0).sqrt_().numpy())
        idxs.append(i.numpy())
    return np.concatenate(dists).astype(np.float64), np.concatenate(idxs)


def _reachability_density(dist: np.ndarray, nn: np.ndarray, k_distance: np.ndarray) -> np.ndarray:
    # reach-dist(q, o) = max(k-distance(o), d(q, o)): within o's own neighbourhood every point is as far as
    # its k-th neighbour, which keeps duplicates and tight clumps from dividing by ~0.
    reach = np.maximum(k_distance[nn], dist).mean(1)
    return 1.0 / np.maximum(reach, 1e-12)
