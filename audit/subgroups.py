"""Subgroups: each class's latent means split into clusters whose number the data chooses.

The audit's first result.  Within each class the latent means are
standardised, reduced to at most `max_dims` whitened principal axes (fitted per
class), and Gaussian mixtures (diagonal covariance) with k = 1..max_k
components are fitted; the k
with the lowest BIC wins (Schwarz's criterion: log-likelihood gain against
parameter count, so one cluster stays one subgroup and a far, compact minority
of a few percent earns its own component).  Each sample's subgroup is its most
likely component.  A class may first be split in two strata
(`find_subgroups`): its early error set when that is coherent, else its
rarest 5% when no whole-class subgroup is rare; each stratum is clustered on
its own, so a minority of a few percent is not a corner of a majority
component.  Ids are unique across classes: positives first, then
negatives, and within a class and stratum from the largest subgroup to the
smallest.

Per sample, `under_representation` ranks the minority first: it mixes how
rare the sample is in its class's latent density with how badly the model
serves it (see `under_representation`).  `summarise_subgroups` turns both into
the ranked list of report.json's `subgroups`.
"""
from __future__ import annotations

import warnings
from numbers import Integral

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits

from .coherence import COHERENT_SHARE
from .errors import DebiasError, NotFittedError
from .sampling import CLASS_NAMES

COVARIANCE_TYPES = ("full", "diag")
MAX_PCA_SAMPLES = 100_000
# The rarest share of a class that is clustered apart when no coherent early error set holds its minority
# apart. Planted faces (2% dark, 5 seeds; README "Debiasing on real images"): the top positive subgroup's most
# enriched attribute was skin_tone=dark on 5 seeds at 5%, 4 at 10%, 15% and 20%, 2 without a split.
RAREST_SHARE = 0.05
# A subgroup of at most RAREST_SHARE of its class whose members' mean under_representation (a within-class
# percentile) is at least RARE_MEAN is rare already: its class is not split. Planted 2% clusters that the
# mixture isolates scored 0.83-0.98; the planted faces' whole-class subgroups 0.43-0.68, except one of 8% of
# its class (bright lighting, 0.83; the dark faces 2% of it) and one of 4%, 41% dark (0.89).
RARE_MEAN = 0.8
STRATUM_REST, STRATUM_ERRORS, STRATUM_RAREST = 0, 1, 2
STRATUM_NAMES = {STRATUM_REST: "the rest", STRATUM_ERRORS: "early error set",
                 STRATUM_RAREST: f"rarest {RAREST_SHARE:.0%}"}
MISSING_VALUES = ("", "n/a")     # with NaN/None: "no value" (synth writes "n/a" where an attribute does not apply)


def _check_positive_int(value, name: str, fix: str) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise DebiasError(f"{name} must be a whole number >= 1, got {value!r}; {fix}")
    return int(value)


class SubgroupFinder:
    """Per-class Gaussian mixtures on whitened principal axes, k chosen by BIC (scikit-learn style).

    Parameters: `max_k` the most subgroups per class; `min_size` the smallest
    subgroup worth its own mixture component on average (a class of n samples
    tries at most n // min_size components, and one of fewer than
    max(10, 2 * min_size) samples stays one subgroup, with a note);
    `max_dims` principal axes kept; `covariance_type` "diag" (the default:
    20 parameters per component in 10 axes, so a cluster of a few dozen
    samples is fitted, and it recovered planted 3% clusters where "full"
    swallowed majority points) or "full"; `n_init` k-means restarts per k;
    `max_fit_samples` mixtures are fitted on at most this many samples of a
    class (then every sample is assigned): 2,500 keep a 1% kind 25 strong and
    the audit of 100k latent vectors under 5 s (10,000 took 3.9 s alone).

    Learned: `labels_` (N,) subgroup ids, `n_subgroups_`, `classes_`
    {class name: {"k", "bic" (one per k tried), "note"}}.
    """

    def __init__(self, max_k: int = 8, min_size: int = 10, max_dims: int = 10, covariance_type: str = "diag",
                 n_init: int = 2, max_fit_samples: int = 2500, random_state: int = 0):
        self.max_k = _check_positive_int(max_k, "max_k (most subgroups per class)", "pass 1 or more")
        self.min_size = _check_positive_int(min_size, "min_size (smallest subgroup)", "pass 1 or more")
        self.max_dims = _check_positive_int(max_dims, "max_dims", "pass 1 or more principal axes")
        self.n_init = _check_positive_int(n_init, "n_init", "pass 1 or more restarts")
        self.max_fit_samples = _check_positive_int(max_fit_samples, "max_fit_samples", "pass 1 or more")
        if covariance_type not in COVARIANCE_TYPES:
            raise DebiasError(f"unknown covariance_type {covariance_type!r}; choose one of "
                              f"{', '.join(COVARIANCE_TYPES)}")
        self.covariance_type, self.random_state = covariance_type, random_state

    def fit(self, mu: np.ndarray, labels: np.ndarray, strata: np.ndarray | None = None,
            reuse: dict | None = None) -> "SubgroupFinder":
        """`strata` (optional, per sample: STRATUM_REST, STRATUM_ERRORS or STRATUM_RAREST; see `find_subgroups`)
        splits each class before clustering.

        A rare kind of sample a few dozen strong is too small for BIC to give it a mixture component
        of its own: on Colored MNIST the clusters alone put 0-4% conflicting samples in each class's top
        subgroup, and on the planted faces the top positive subgroup was a lighting cluster. A coherent early
        error set (JTT's) or the class's rarest samples hold it apart; the clusters then find its kinds.
        `reuse` ({(class, stratum): (subgroup of each member, info)}, as `parts_` holds them) skips the
        fits of parts already clustered.
        """
        mu, labels = _check_inputs(mu, labels)
        strata = np.zeros(len(labels), dtype=np.int64) if strata is None else np.asarray(strata).astype(np.int64)
        if strata.shape != labels.shape or not np.isin(strata, list(STRATUM_NAMES)).all():
            raise DebiasError(f"strata must hold one of {sorted(STRATUM_NAMES)} per sample")
        self.labels_ = np.empty(len(labels), dtype=np.int64)
        self.classes_: dict[str, dict] = {}
        self.parts_: dict[tuple, tuple] = {}
        next_id = 0
        for cls in sorted(np.unique(labels).tolist(), reverse=True):      # positives first, as everywhere
            in_class = strata[labels == cls]
            split = bool(in_class.any())
            for stratum in sorted(np.unique(in_class).tolist(), reverse=True):
                members = np.flatnonzero((labels == cls) & (strata == stratum))
                known = (reuse or {}).get((cls, stratum))
                local, info = known if known is not None and len(known[0]) == len(members) \
                    else self._fit_class(mu[members])
                self.parts_[(cls, stratum)] = (local, info)
                self.labels_[members] = local + next_id
                next_id += int(local.max()) + 1
                name = CLASS_NAMES.get(int(cls), str(cls))
                self.classes_[f"{name}, {STRATUM_NAMES[stratum]}" if split else name] = info
        self.n_subgroups_ = next_id
        return self

    def fit_predict(self, mu: np.ndarray, labels: np.ndarray, strata: np.ndarray | None = None) -> np.ndarray:
        return self.fit(mu, labels, strata).labels_

    def summary(self) -> dict:
        """How the subgroups were found, JSON-ready (report.json's `subgroup_discovery`)."""
        if not hasattr(self, "labels_"):
            raise NotFittedError("this SubgroupFinder is not fitted yet; call fit(mu, labels) first")
        return {"method": f"per-class Gaussian mixture ({self.covariance_type} covariance) on at most "
                          f"{self.max_dims} whitened principal axes of the standardised latent means; "
                          f"k = 1..{self.max_k} chosen by lowest BIC",
                "max_k": self.max_k, "min_size": self.min_size, "classes": self.classes_}

    def _fit_class(self, Z: np.ndarray) -> tuple[np.ndarray, dict]:
        n = len(Z)
        floor = max(10, 2 * self.min_size)
        one = np.zeros(n, dtype=np.int64)
        if n < floor:
            return one, {"k": 1, "bic": [], "note": f"{n} samples, fewer than {floor} (2 x min_size, at least "
                                                     f"10): kept as one subgroup"}
        X = self._reduce(Z)
        if X is None:
            return one, {"k": 1, "bic": [], "note": "latent means do not vary: kept as one subgroup"}
        fit_X = X
        if n > self.max_fit_samples:
            rng = np.random.default_rng(self.random_state)
            fit_X = X[rng.choice(n, self.max_fit_samples, replace=False)]
        bics, models = [], []
        with warnings.catch_warnings(), threadpool_limits(1):
            # A k that fits badly just loses on BIC.  One thread (BLAS, OpenMP): the data are (n, <= 10), and
            # threads fighting over shared cores made fits ten times slower.
            warnings.simplefilter("ignore", ConvergenceWarning)
            for k in range(1, min(self.max_k, n // self.min_size, len(fit_X)) + 1):
                gm = self._fit_k(fit_X, k)
                bics.append(float(gm.bic(fit_X)))
                models.append(gm)
        best = int(np.argmin(bics))                          # first minimum: ties go to fewer subgroups
        assign = models[best].predict(X)
        local = _largest_first(assign)                       # a component no sample ends up in is dropped
        return local, {"k": int(local.max()) + 1, "bic": bics, "note": None}

    def _mixture(self, k: int, **init) -> GaussianMixture:
        return GaussianMixture(k, covariance_type=self.covariance_type, n_init=1 if k == 1 or init else self.n_init,
                               reg_covar=1e-3,              # in whitened units: keeps a tight cluster's fit finite
                               random_state=self.random_state, **init)

    def _fit_k(self, X: np.ndarray, k: int) -> GaussianMixture:
        """EM from k-means, then once more from robust (median / MAD) statistics of its clusters; the likelier.

        k-means may start a small component with a few majority points in it; EM then widens the
        component to keep them (a local optimum: 3% clusters came out 78% pure).  Restarting from each
        cluster's median and MAD, which those few points barely move, finds the tight fit.
        """
        gm = self._mixture(k).fit(X)
        if k == 1:
            return gm
        assign = gm.predict(X)
        if np.bincount(assign, minlength=k).min() < 2:
            return gm
        means = np.stack([np.median(X[assign == c], 0) for c in range(k)])
        var = np.stack([(1.4826 * np.median(np.abs(X[assign == c] - means[c]), 0)) ** 2 for c in range(k)]) + 1e-3
        precisions = 1 / var if self.covariance_type == "diag" else np.stack([np.diag(1 / v) for v in var])
        robust = self._mixture(k, weights_init=np.bincount(assign, minlength=k) / len(X), means_init=means,
                               precisions_init=precisions).fit(X)
        return robust if robust.lower_bound_ > gm.lower_bound_ else gm

    def _reduce(self, Z: np.ndarray) -> np.ndarray | None:
        """Standardised, then the top principal axes, whitened; None when nothing varies."""
        std = Z.std(0)
        varies = std > 1e-8 * max(float(np.abs(Z).max()), 1.0)
        if not varies.any():
            return None
        if not varies.all():
            Z = Z[:, varies]
        Zs = (Z - Z.mean(0)) / std[varies]
        dims = min(self.max_dims, Zs.shape[1], len(Zs) - 1)
        # The axes from at most MAX_PCA_SAMPLES samples: as good as from all of a large class, and the fit's
        # cost stays fixed (a million latent means took seconds more).
        fit = Zs
        if len(Zs) > MAX_PCA_SAMPLES:
            fit = Zs[np.random.default_rng(self.random_state).choice(len(Zs), MAX_PCA_SAMPLES, replace=False)]
        pca = PCA(n_components=dims, random_state=self.random_state).fit(fit)
        keep = pca.explained_variance_ > 1e-10 * pca.explained_variance_[0]
        return pca.transform(Zs)[:, keep] / np.sqrt(pca.explained_variance_[keep])


def discover_subgroups(mu: np.ndarray, labels: np.ndarray, max_k: int = 8, min_size: int = 10,
                       seed: int = 0) -> np.ndarray:
    """Per-sample subgroup id, unique across classes; see `SubgroupFinder` for the rule."""
    return SubgroupFinder(max_k=max_k, min_size=min_size, random_state=seed).fit_predict(mu, labels)


def _check_inputs(mu: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu, labels = np.asarray(mu, dtype=np.float64), np.asarray(labels)
    if mu.ndim != 2 or len(mu) == 0:
        raise DebiasError(f"mu must be a non-empty 2-D array (n_samples, latent_dim), got shape {mu.shape}")
    if labels.shape != (len(mu),):
        raise DebiasError(f"{len(mu)} latent vectors but labels has shape {labels.shape}; pass one label each")
    if not np.isfinite(mu).all():
        raise DebiasError("mu contains NaN or infinite values; the model diverged or the input is broken")
    return mu, labels


# --------------------------------------------------------------------------- per-sample scores

def classification_loss(logit: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(binary cross-entropy per sample, 1.0 where misclassified); a logit of 0 predicts negative."""
    logit, labels = np.asarray(logit, dtype=np.float64), np.asarray(labels)
    loss = np.logaddexp(0.0, -np.where(labels == 1, 1.0, -1.0) * logit)       # stable log(1 + e^-yx)
    wrong = ((logit > 0).astype(np.int64) != labels).astype(np.float64)
    return loss, wrong


def _percentile(x: np.ndarray) -> np.ndarray:
    """Rank / n in (0, 1], ties averaged: a unit-free scale on which any two signals can be averaged."""
    return rankdata(x, method="average") / len(x)


def under_representation(log_density: np.ndarray, labels: np.ndarray, loss: np.ndarray | None = None,
                         errors: np.ndarray | None = None, local: np.ndarray | None = None,
                         error_classes=None) -> np.ndarray:
    """Per sample, higher = more under-represented; in (0, 1], a within-class percentile scale.

    Within each class:  rarity = percentile rank of the local outlier factor
    `local` when given (the audit's: audit/local_outliers.py), else of
    -log_density;  the error
    signal = the error flag (1 = an early snapshot of the model misclassified
    it: JTT's error set) when the training left one, else the percentile rank
    of the final model's loss.  The score is the mean of rarity and the error
    signal (rarity alone when there is neither), so with flags every flagged
    sample ranks above every other and rarity orders each side.
    The final loss is not mixed with the flags: by the end of a debiased run
    the model has memorised its rare samples, and on Colored MNIST (1% and 2%
    conflicting, 2 seeds) adding it dropped the AUC for the conflicting
    samples from 0.96-1.00 to 0.79-0.85 and the AP from 0.65-0.97 to 0.26-0.36.
    `error_classes` (default: all) are the classes whose flags count; in the
    others rarity alone orders (see `trusted_error_classes`).
    """
    labels = np.asarray(labels)
    rarity_source = -np.asarray(log_density, dtype=np.float64)
    extra = {}
    for name, values in (("loss", loss), ("errors", errors), ("local", local)):
        if values is not None:
            values = np.asarray(values, dtype=np.float64)
            if values.shape != labels.shape:
                raise DebiasError(f"{name} has shape {values.shape} but there are {len(labels)} samples; "
                                  f"pass one value per sample or none")
            if not np.isfinite(values).all():
                raise DebiasError(f"{name} has NaN or infinite values; pass finite numbers")
            extra[name] = values
    if "local" in extra:
        rarity_source = extra["local"]
    score = np.empty(len(labels))
    for cls in np.unique(labels):
        m = labels == cls
        rarity = _percentile(rarity_source[m])
        if "errors" in extra and (error_classes is None or cls in error_classes):
            score[m] = (rarity + extra["errors"][m]) / 2
        elif "loss" in extra and "errors" not in extra:
            score[m] = (rarity + _percentile(extra["loss"][m])) / 2
        else:
            score[m] = rarity
    return score


def trusted_error_classes(labels: np.ndarray, coherence: dict | None) -> list:
    """The classes whose early error set counts: all when the training recorded no coherence or found the
    error set coherent as a whole (its pooled share, the gated schedule's test: audit/coherence.py), else none.
    A scattered error set is hard cases, not a missing kind: on the planted faces its flags ranked the dark
    faces at AUC 0.50-0.56, and mixing them in put a few dozen light faces above every dark one (README
    "Debiasing on real images"). Pooled, not per class: on Colored MNIST a coherent run's one class can fall
    under the line, and there rarity alone ranks the conflicting digits at AUC ~0.5."""
    classes = np.unique(np.asarray(labels)).tolist()
    if coherence is None or (coherence.get("pooled") or 0.0) >= COHERENT_SHARE:
        return classes
    return []


def _is_rare(mean_under, share):
    """A subgroup few (at most RAREST_SHARE of its class) and outlying (mean under_representation >= RARE_MEAN):
    a kind of sample the class lacks."""
    return (np.asarray(mean_under) >= RARE_MEAN) & (np.asarray(share) <= RAREST_SHARE)


def find_subgroups(finder: SubgroupFinder, mu: np.ndarray, labels: np.ndarray, under: np.ndarray,
                   errors: np.ndarray | None = None, error_classes=None,
                   rarest_share: float = RAREST_SHARE) -> np.ndarray:
    """Fit `finder` (its `labels_` are the subgroups) and return each sample's stratum.

    A class whose early error set counts (`error_classes`, default all) is split into it and the rest
    (STRATUM_ERRORS). Every other class is clustered whole first; when none of its subgroups of at least
    `finder.min_size` is rare (`_is_rare`), its `rarest_share` highest `under` scores are
    split off (STRATUM_RAREST) and clustered apart, the rest keeping its whole-class subgroups, so that a
    minority at the edge of a majority component, not a component of its own, gets subgroups (the planted
    faces) while a minority the whole class's mixture already isolates keeps its subgroup.
    """
    labels, under = np.asarray(labels), np.asarray(under, dtype=np.float64)
    strata = np.full(len(labels), STRATUM_REST, dtype=np.int64)
    for cls in np.unique(labels):
        rows = np.flatnonzero(labels == cls)
        flags = None if errors is None else np.asarray(errors)[rows] > 0.5
        if flags is not None and flags.any() and (error_classes is None or cls in error_classes):
            strata[rows[flags]] = STRATUM_ERRORS
    finder.fit(mu, labels, strata)
    split = strata.copy()
    for cls in np.unique(labels):
        rows = np.flatnonzero(labels == cls)
        n_rarest = int(round(rarest_share * len(rows)))
        if (strata[rows] != STRATUM_REST).any() or n_rarest < finder.min_size:
            continue
        _, index = np.unique(finder.labels_[rows], return_inverse=True)
        sizes = np.bincount(index)
        mean_under = np.bincount(index, weights=under[rows]) / sizes
        if not _is_rare(mean_under, sizes / len(rows))[sizes >= finder.min_size].any():
            split[rows[np.argsort(-under[rows], kind="stable")[:n_rarest]]] = STRATUM_RAREST
    if (split != strata).any():
        # Only the rarest shares are clustered anew: the rest of a split class keeps its whole-class subgroups
        # (the fit is the audit's main cost: the 100k audit took 1.2 s more refitting them).
        reuse = dict(finder.parts_)
        for cls in np.unique(labels[split == STRATUM_RAREST]):
            whole, info = finder.parts_[(cls, STRATUM_REST)]
            kept = split[labels == cls] == STRATUM_REST
            reuse[(cls, STRATUM_REST)] = (_largest_first(whole[kept]), {**info, "note": (
                f"the whole class's subgroups, less its rarest {rarest_share:.0%} (clustered apart)")})
        finder.fit(mu, labels, split, reuse=reuse)
    return split


def _largest_first(local: np.ndarray) -> np.ndarray:
    """Subgroup numbers 0.. from the largest to the smallest, dropping numbers no sample holds."""
    sizes = np.bincount(local)
    order = [c for c in np.argsort(-sizes, kind="stable") if sizes[c] > 0]
    remap = np.full(len(sizes), -1)
    remap[order] = np.arange(len(order))
    return remap[local]


# --------------------------------------------------------------------------- attributes

def known_strings(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(values as str, mask of samples that hold a value): NaN, None, "" and "n/a" hold none."""
    # str() of each distinct value, not of each sample: a million-row column has a handful of values.
    codes, uniques = pd.factorize(column.to_numpy(dtype=object), use_na_sentinel=True)
    names = np.array([str(v) for v in uniques] + ["nan"], dtype=object)   # code -1 (NaN, None) last
    text = names[codes]
    known = (codes >= 0) & ~np.isin(names, MISSING_VALUES)[codes]
    return text, known


def attribute_codes(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(code of each sample's value, -1 where it holds none; the values as str, sorted): known_strings as
    integers, for the sums and means over a million samples that comparing strings would make slow."""
    raw, uniques = pd.factorize(column.to_numpy(dtype=object), use_na_sentinel=True)
    text = np.array([str(v) for v in uniques], dtype=object)
    held = ~np.isin(text, MISSING_VALUES)
    names, inverse = np.unique(text[held], return_inverse=True)   # 1 and "1" are one value, as in known_strings
    lookup = np.full(len(uniques) + 1, -1, dtype=np.int64)       # the last entry: factorize's -1 (NaN, None)
    lookup[np.flatnonzero(held)] = inverse.ravel()
    return lookup[raw], names


def enrichment(subgroup_ids: np.ndarray, attributes: pd.DataFrame, labels: np.ndarray | None = None,
               min_count: int = 3) -> dict[int, list[dict]]:
    """For each subgroup and attribute, the most enriched value: {id: [{attribute, value, precision, ...}]}.

    Within the subgroup's class and among samples that hold a value of the attribute:
    precision = share of the subgroup's members holding the value;
    recall = share of the class's samples with the value that are in the subgroup;
    lift = precision / share of the class holding the value.
    The most enriched value has the highest lift among values at least
    `min_count` members hold; an attribute with none above lift 1 is left out.
    Each subgroup's list is ordered by lift, highest first.  Without `labels`
    all samples are one class.
    """
    ids = np.asarray(subgroup_ids)
    labels = np.zeros(len(ids), dtype=np.int64) if labels is None else np.asarray(labels)
    if len(attributes) != len(ids) or labels.shape != ids.shape:
        raise DebiasError(f"{len(ids)} subgroup ids but {len(attributes)} attribute rows and {len(labels)} labels; "
                          "pass one of each per sample")
    min_count = _check_positive_int(min_count, "min_count", "pass 1 or more members")
    out: dict[int, list[dict]] = {int(g): [] for g in np.unique(ids)}
    for name in attributes.columns:
        text, known = known_strings(attributes[name])
        for cls in np.unique(labels):
            m = known & (labels == cls)
            if not m.any():
                continue
            table = pd.crosstab(ids[m], text[m])                  # subgroup x value counts
            value_total = table.sum(axis=0)                           # per value, in the class
            base = value_total / value_total.sum()
            for g, row in table.iterrows():
                precision = row / row.sum()
                lift = precision / base
                ok = (row >= min_count) & (lift > 1 + 1e-9)
                if not ok.any():
                    continue
                # Highest lift; ties to the larger count, then the value's name, so the choice is stable.
                best = max(row.index[ok.to_numpy()], key=lambda v: (lift[v], row[v], str(v)))
                out[int(g)].append({"attribute": str(name), "value": str(best),
                                    "precision": float(precision[best]),
                                    "recall": float(row[best] / value_total[best]),
                                    "lift": float(lift[best]), "count": int(row[best])})
    for found in out.values():
        found.sort(key=lambda e: -e["lift"])
    return out


# --------------------------------------------------------------------------- the ranked list

def summarise_subgroups(subgroup_ids: np.ndarray, labels: np.ndarray, sampling_weight: np.ndarray,
                        under_representation: np.ndarray, attributes: pd.DataFrame | None = None,
                        logit: np.ndarray | None = None, min_size: int = 10,
                        min_count: int = 3, errors: np.ndarray | None = None,
                        strata: np.ndarray | None = None) -> list[dict]:
    """One dict per subgroup, most under-represented and worst served first.

    share = n / class size; mean_weight_ratio = members' mean sampling weight
    over the class's (how much more often they are drawn than uniform);
    error_rate and mean_loss (binary cross-entropy) need `logit`, else None;
    under_representation = the members' mean score; early_error_share = the
    share of members in the training's early error set (`errors`), else None;
    stratum = the name of the stratum it was clustered in (`strata`, as
    `SubgroupFinder.fit` took them), else None.
    Rank: subgroups made mostly of the early error set (its stratum in
    `strata`, else the `errors` flags) and rare subgroups (at most 5% of the
    class with mean under_representation >= RARE_MEAN: the rarest share's, a
    far minority's) first, as their members rank first in `under_representation`; within
    each tier by under_representation x
    (1 + error_rate) (error_rate 0 when unknown), highest first. The final
    model's error rate alone must not lift a majority cluster above them: a run
    that concentrated on the error set learns it and may err more elsewhere
    (Colored MNIST, geometric schedule: a 23%-error majority cluster outranked
    the 99%-conflicting one). A subgroup smaller than `min_size` is flagged
    `small` and ranked after every other, since its rates are too uncertain to
    lead. `grid` is None here: the pipeline fills in the PNG it writes.
    """
    ids, labels = np.asarray(subgroup_ids), np.asarray(labels)
    weight = np.asarray(sampling_weight, dtype=np.float64)
    score = np.asarray(under_representation, dtype=np.float64)
    for name, arr in (("labels", labels), ("sampling_weight", weight), ("under_representation", score)):
        if arr.shape != ids.shape:
            raise DebiasError(f"{name} has shape {arr.shape} but there are {len(ids)} subgroup ids; "
                              "pass one value per sample")
    min_size = _check_positive_int(min_size, "min_size (smallest subgroup)", "pass 1 or more")
    loss, wrong = classification_loss(logit, labels) if logit is not None else (None, None)
    flagged = None if errors is None else np.asarray(errors, dtype=np.float64) > 0.5
    if strata is not None:
        strata = np.asarray(strata)
        if strata.shape != ids.shape:
            raise DebiasError(f"strata has shape {strata.shape} but there are {len(ids)} subgroup ids")
    in_error_set = strata == STRATUM_ERRORS if strata is not None else flagged
    enriched = enrichment(ids, attributes, labels, min_count) if attributes is not None and \
        len(attributes.columns) else {}
    rows, leads = [], {}
    for g in np.unique(ids):
        members = ids == g
        classes = np.unique(labels[members])
        if len(classes) != 1:
            raise DebiasError(f"subgroup {g} holds samples of both classes; ids must be unique across classes "
                              "(discover_subgroups makes them so)")
        in_class = labels == classes[0]
        n = int(members.sum())
        error_rate = float(wrong[members].mean()) if wrong is not None else None
        mostly_error_set = in_error_set is not None and in_error_set[members].mean() >= 0.5
        leads[int(g)] = mostly_error_set or bool(_is_rare(score[members].mean(), n / int(in_class.sum())))
        rows.append({"id": int(g), "class": CLASS_NAMES.get(int(classes[0]), str(classes[0])), "n": n,
                     "share": n / int(in_class.sum()),
                     "mean_weight_ratio": float(weight[members].mean() / weight[in_class].mean()),
                     "error_rate": error_rate,
                     "mean_loss": float(loss[members].mean()) if loss is not None else None,
                     "under_representation": float(score[members].mean()),
                     "early_error_share": float(flagged[members].mean()) if flagged is not None else None,
                     "stratum": STRATUM_NAMES[int(strata[members][0])] if strata is not None else None,
                     "small": n < min_size,
                     "enriched": [{k: e[k] for k in ("attribute", "value", "precision", "recall", "lift", "count")}
                                  for e in enriched.get(int(g), [])],
                     "grid": None})
    rows.sort(key=lambda r: (r["small"], not leads[r["id"]],
                             -r["under_representation"] * (1 + (r["error_rate"] or 0.0)), r["id"]))
    for rank, r in enumerate(rows, 1):
        r["rank"] = rank
    return rows


def grid_members(mu: np.ndarray, subgroup_ids: np.ndarray, subgroup: int, n: int = 8,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(the `n` members nearest the subgroup's mean latent vector, up to `n` other members at random)."""
    members = np.flatnonzero(np.asarray(subgroup_ids) == subgroup)
    if len(members) == 0:
        raise DebiasError(f"no sample is in subgroup {subgroup}; pass an id from subgroup_ids")
    z = np.asarray(mu, dtype=np.float64)[members]
    distance = np.linalg.norm(z - z.mean(0), axis=1)
    central = members[np.argsort(distance, kind="stable")[:n]]
    rest = np.setdiff1d(members, central)
    rng = np.random.default_rng([seed, int(subgroup)])
    return central, np.sort(rng.choice(rest, min(n, len(rest)), replace=False))


__all__ = ["SubgroupFinder", "discover_subgroups", "classification_loss", "under_representation",
           "trusted_error_classes", "find_subgroups", "enrichment", "summarise_subgroups", "grid_members"]
