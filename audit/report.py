"""The audit: subgroups, latent densities, sampling weights, anomalies and the report as data.

`audit_latents` is pure numpy over latent means so it can be run (and timed) on
100k vectors without a model; `run_audit` adds the forward pass.  Its first
result is `subgroups` (see audit.subgroups): each class's latent clusters,
ranked most under-represented and worst served first; the features are the
latent directions that set the top subgroups apart (see audit.features).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.special import expit

from .dataset import ImageDataset
from .density import ESTIMATORS
from .errors import DebiasError
from .features import subgroup_directions
from .inference import predict
from .local_outliers import local_outlier_factor
from .projection import latent_map, pca_2d
from .sampling import (
    CLASS_NAMES,
    REWEIGHT,
    check_weighting,
    class_balanced_sampling_probability,
    effective_sample_fraction,
    per_class_log_density,
)
from .subgroups import (
    SubgroupFinder,
    classification_loss,
    find_subgroups,
    summarise_subgroups,
    trusted_error_classes,
    under_representation,
)
from .verdict import build_verdict

ANOMALY_ON = ("both", "density", "reconstruction")
SAMPLE_COLUMNS = ["index", "label", "log_density", "sampling_weight", "anomaly_score", "is_anomaly"]
SUBGROUP_COLUMNS = ["subgroup", "under_representation"]     # right after SAMPLE_COLUMNS
MAP_COLUMNS = ["map_x", "map_y"]                             # the latent map (audit.projection), after those


@dataclass
class AuditConfig:
    density: str = "histogram"
    density_params: dict = field(default_factory=dict)
    reweight: str = "both"
    strength: float = 1.0
    min_effective_fraction: float = 0.25
    anomaly_on: str = "both"          # which tail flags a sample: density, reconstruction or either
    anomaly_threshold: float = 3.5    # robust z-score (median / MAD) at or above which a sample is flagged
    # ... and also each class's least typical share: robust z alone flagged nothing on ordinary data (light tails).
    anomaly_tail: float = 0.02
    histogram_bins: int = 10
    top_features: int = 5
    max_subgroups: int = 8            # per class; the number found is chosen by BIC, up to this
    min_subgroup_size: int = 10       # smaller subgroups are listed, flagged small and ranked last

    def __post_init__(self) -> None:
        if self.density not in ESTIMATORS:
            raise DebiasError(f"unknown density estimator {self.density!r}; choose one of {', '.join(ESTIMATORS)}")
        if self.reweight not in REWEIGHT:
            raise DebiasError(f"unknown reweight {self.reweight!r}; choose one of {', '.join(REWEIGHT)}")
        check_weighting(self.strength, self.min_effective_fraction)
        if self.anomaly_on not in ANOMALY_ON:
            raise DebiasError(f"unknown anomaly source {self.anomaly_on!r}; choose one of {', '.join(ANOMALY_ON)}")
        if not self.anomaly_threshold > 0:
            raise DebiasError(f"anomaly threshold must be > 0 (a robust z-score), got {self.anomaly_threshold}")
        if not 0 <= self.anomaly_tail < 0.5:
            raise DebiasError(f"anomaly tail must be a share in [0, 0.5) (0 turns the tail rule off), "
                              f"got {self.anomaly_tail}")
        if self.histogram_bins < 2 or self.top_features < 1:
            raise DebiasError("histogram bins must be >= 2 and top features >= 1")
        for name in ("max_subgroups", "min_subgroup_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise DebiasError(f"{name} must be a whole number >= 1, got {value!r}")


def min_class_size(min_subgroup_size: int) -> int:
    """The fewest samples a class needs for the audit to cluster it (SubgroupFinder's floor)."""
    return max(10, 2 * min_subgroup_size)


def check_class_sizes(class_counts: dict[str, int], min_subgroup_size: int = AuditConfig.min_subgroup_size) -> None:
    """DebiasError naming the first class too small to split into subgroups: its counts mean nothing."""
    floor = min_class_size(min_subgroup_size)
    for name, n in class_counts.items():
        if 0 < n < floor:
            raise DebiasError(f"the {name} class has {n} samples, too few to cluster into subgroups: the audit needs "
                              f"at least {floor} per class (2 x min_subgroup_size {min_subgroup_size}, at least 10); "
                              f"add {name} samples or lower min_subgroup_size")


@dataclass
class AuditResult:
    samples: pd.DataFrame      # one row per input sample, in input order
    report: dict               # JSON-ready
    mu: np.ndarray             # latent means (N, latent_dim), for figures


def robust_z(values: np.ndarray) -> np.ndarray:
    """(x - median) / (1.4826 * MAD): a z-score that the tail itself cannot inflate."""
    med = np.median(values)
    mad = 1.4826 * np.median(np.abs(values - med))
    if mad == 0:
        mad = values.std() or 1.0
    return (values - med) / mad


def anomaly_scores(log_density: np.ndarray, recon_error: np.ndarray | None, labels: np.ndarray,
                   anomaly_on: str) -> np.ndarray:
    """Per class, the larger of the robust z of low density and of high reconstruction error."""
    score = np.full(len(labels), -np.inf)
    for cls in np.unique(labels):
        m = labels == cls
        if anomaly_on in ("both", "density"):
            score[m] = np.maximum(score[m], robust_z(-log_density[m]))
        if anomaly_on in ("both", "reconstruction") and recon_error is not None:
            score[m] = np.maximum(score[m], robust_z(np.log(recon_error[m] + 1e-12)))
    if not np.isfinite(score).all():
        raise DebiasError("anomaly source 'reconstruction' needs a DB-VAE model; use --anomaly-on density")
    return score


def flag_anomalies(score: np.ndarray, labels: np.ndarray, threshold: float,
                   tail: float) -> tuple[np.ndarray, dict[int, float]]:
    """(flags, per-class cutoff): flagged at robust z >= `threshold`, or above the class's (1 - tail)
    quantile of the score when `tail` > 0 (strictly above, so a class of equal scores flags none).

    The cutoff is the lower of the two, per class: the score at which that class's samples were flagged.
    """
    flagged = score >= threshold
    cutoffs = {}
    for cls in np.unique(labels):
        m = labels == cls
        cut = float(threshold)
        if tail > 0:
            q = float(np.quantile(score[m], 1 - tail))
            flagged[m] |= score[m] > q
            cut = min(cut, q)
        cutoffs[int(cls)] = cut
    return flagged, cutoffs


def audit_latents(mu: np.ndarray, labels: np.ndarray, cfg: AuditConfig,
                  recon_error: np.ndarray | None = None,
                  attributes: pd.DataFrame | None = None,
                  logit: np.ndarray | None = None,
                  errors: np.ndarray | None = None, error_coherence: dict | None = None) -> AuditResult:
    """The audit of latent means `mu` (N, latent_dim).

    Optional per-sample inputs: `recon_error` (the decoder's L1 error), `logit`
    (the classifier's; gives error rates, losses and predicted_probability) and
    `errors` (1.0 where an early snapshot of the model misclassified the
    sample, JTT's error set); the last two feed `under_representation`.
    `error_coherence` (error_set.json's `coherence`, as the training recorded
    it) keeps a scattered error set out of the ranking and the strata
    (`trusted_error_classes`).
    """
    labels = np.asarray(labels)
    if len(mu) != len(labels):
        raise DebiasError(f"{len(mu)} latent vectors but {len(labels)} labels")
    check_class_sizes({CLASS_NAMES.get(int(c), str(c)): int((labels == c).sum()) for c in np.unique(labels)},
                      cfg.min_subgroup_size)
    for name, values in (("logit", logit), ("errors", errors)):
        if values is not None and np.shape(values) != labels.shape:
            raise DebiasError(f"{name} has shape {np.shape(values)} but there are {len(labels)} samples; "
                              f"pass one value per sample or none")
    attributes = attributes if attributes is not None else pd.DataFrame(index=pd.RangeIndex(len(labels)))
    log_density = per_class_log_density(mu, labels, cfg.density, cfg.density_params)
    weight, strength_used = class_balanced_sampling_probability(log_density, labels, cfg.reweight, cfg.strength,
                                                                cfg.min_effective_fraction)
    score = anomaly_scores(log_density, recon_error, labels, cfg.anomaly_on)
    flagged, cutoffs = flag_anomalies(score, labels, cfg.anomaly_threshold, cfg.anomaly_tail)
    loss = classification_loss(logit, labels)[0] if logit is not None else None
    # Rarity by local outlier factor, not the sampling density: the minority often sits at the edge of a
    # majority cluster rather than in a sparse region of its own (audit/local_outliers.py).
    error_classes = trusted_error_classes(labels, error_coherence) if errors is not None else None
    under = under_representation(log_density, labels, loss=loss, errors=errors,
                                 local=local_outlier_factor(mu, labels), error_classes=error_classes)
    finder = SubgroupFinder(max_k=cfg.max_subgroups, min_size=cfg.min_subgroup_size)
    strata = find_subgroups(finder, mu, labels, under, errors, error_classes)

    samples = pd.DataFrame({"index": np.arange(len(labels)), "label": labels, "log_density": log_density,
                            "sampling_weight": weight, "anomaly_score": score, "is_anomaly": flagged,
                            "subgroup": finder.labels_, "under_representation": under})
    coords, explained = pca_2d(mu)
    samples["map_x"], samples["map_y"] = coords[:, 0], coords[:, 1]
    if logit is not None:
        samples["predicted_probability"] = expit(np.asarray(logit, dtype=np.float64))
    if recon_error is not None:
        samples["reconstruction_error"] = recon_error
    for col in attributes.columns:
        name = col if col not in samples.columns else f"attr_{col}"
        samples[name] = attributes[col].to_numpy()

    subgroups = summarise_subgroups(finder.labels_, labels, weight, under, attributes, logit,
                                    min_size=cfg.min_subgroup_size, errors=errors, strata=strata)
    features = subgroup_directions(mu, labels, finder.labels_, subgroups, attributes, cfg.top_features,
                                   cfg.histogram_bins)
    discovery = finder.summary()
    # The final loss counts only where there is no early error set (see subgroups.under_representation).
    error_signal = ["error_set"] if error_classes else ["loss"] if errors is None and loss is not None else []
    discovery["under_representation_signals"] = ["local_outlier_factor", *error_signal]
    if errors is not None:
        discovery["error_set_classes"] = [CLASS_NAMES.get(int(c), str(c)) for c in error_classes]
    report = {
        "summary": {"n_samples": int(len(labels)),
                    "class_counts": {CLASS_NAMES[c]: int((labels == c).sum()) for c in (1, 0)},
                    "latent_dim": int(mu.shape[1]),
                    "max_to_min_weight_ratio": _weight_ratio(weight, labels),
                    "strength_used": {CLASS_NAMES[c]: v for c, v in strength_used.items()},
                    "effective_sample_fraction": {CLASS_NAMES[c]: effective_sample_fraction(weight[labels == c])
                                                  for c in strength_used}},
        "subgroups": subgroups,
        "subgroup_discovery": discovery,
        "config": asdict(cfg),
        "latent_histograms": latent_histograms(mu, labels, cfg.histogram_bins),
        "under_represented_features": features,
        "attribute_relations": attribute_relations(mu, labels, attributes),
        "representation": representation(samples, labels, attributes),
        "anomalies": anomaly_summary(samples, cfg, cutoffs),
        "latent_map": latent_map(coords, explained),
    }
    report["verdict"] = build_verdict(report)   # from the parts above; the first thing a reader sees
    return AuditResult(samples=samples, report=report, mu=mu)


def run_audit(model, dataset: ImageDataset, cfg: AuditConfig, device,
              errors: np.ndarray | None = None, progress: bool = False,
              error_coherence: dict | None = None) -> AuditResult:
    """The forward pass, then `audit_latents`; `errors` and `error_coherence` as there (the training's error
    set, if any, and its coherence as recorded)."""
    if not hasattr(model, "encode"):
        raise DebiasError("auditing needs a DB-VAE model (its latent space); train one with --method dbvae")
    out = predict(model, dataset.images, device, progress=progress)
    return audit_latents(out["mu"], dataset.labels, cfg, out["recon_error"], dataset.attributes,
                         logit=out["logit"], errors=errors, error_coherence=error_coherence)


def _weight_ratio(weight: np.ndarray, labels: np.ndarray) -> dict:
    return {CLASS_NAMES[c]: float(weight[labels == c].max() / weight[labels == c].min())
            for c in np.unique(labels)}


def latent_histograms(mu: np.ndarray, labels: np.ndarray, bins: int) -> list[dict]:
    """Per dimension: shared edges, counts per class."""
    lo, hi = mu.min(0), mu.max(0)
    # Each class's dimensions as contiguous rows, once: not a strided column per dimension and class.
    by_class = {CLASS_NAMES[c]: np.ascontiguousarray(mu[labels == c].T) for c in np.unique(labels)}
    out = []
    for i in range(mu.shape[1]):
        edges = np.linspace(lo[i], hi[i] if hi[i] > lo[i] else lo[i] + 1e-6, bins + 1)
        counts = {name: np.histogram(rows[i], edges)[0].tolist() for name, rows in by_class.items()}
        out.append({"dimension": i, "edges": edges.tolist(), "counts": counts})
    return out


def _encode_groups(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(group of each value as str, the groups sorted); str() of each distinct value, not of each sample."""
    raw, uniques = pd.factorize(values.to_numpy(dtype=object), use_na_sentinel=False)
    names, inverse = np.unique(np.array([str(u) for u in uniques], dtype=object), return_inverse=True)
    return inverse.ravel()[raw], names


def correlation_ratio(z: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """eta^2 per dimension: share of a dimension's variance explained by the groups."""
    counts = np.bincount(codes, minlength=n_groups).astype(float)
    one_hot = sparse.csr_matrix((np.ones(len(codes)), (codes, np.arange(len(codes)))), shape=(n_groups, len(codes)))
    sums = np.asarray(one_hot @ z)                                   # (n_groups, d): each group's sum
    means = sums / np.maximum(counts, 1)[:, None]
    between = (counts[:, None] * (means - z.mean(0)) ** 2).sum(0)
    total = ((z - z.mean(0)) ** 2).sum(0) + 1e-12
    return between / total


def attribute_relations(mu: np.ndarray, labels: np.ndarray, attributes: pd.DataFrame,
                        top: int = 3) -> list[dict]:
    """Which latent dimensions track each attribute, within each class where it varies."""
    out = []
    for name in attributes.columns:
        for cls in np.unique(labels):
            m = labels == cls
            codes, uniques = _encode_groups(attributes[name][m])
            if len(uniques) < 2:
                continue
            eta = correlation_ratio(mu[m], codes, len(uniques))
            best = np.argsort(-eta)[:top]
            out.append({"attribute": str(name), "class": CLASS_NAMES[int(cls)], "strength": float(eta[best[0]]),
                        "dimensions": [{"dimension": int(i), "eta_squared": float(eta[i])} for i in best]})
    return sorted(out, key=lambda r: -r["strength"])


def representation(samples: pd.DataFrame, labels: np.ndarray, attributes: pd.DataFrame) -> list[dict]:
    """Per attribute value and class: count, share (with its 95% Wilson interval), mean weight (relative to
    uniform), mean density."""
    from .stats import as_interval, wilson_interval  # local: this function is the only user in this module

    out = []
    for name in attributes.columns:
        frame = pd.DataFrame({"label": labels, "value": attributes[name].astype(str).to_numpy(),
                              "w": samples["sampling_weight"].to_numpy(),
                              "d": samples["log_density"].to_numpy(),
                              "a": samples["is_anomaly"].to_numpy()})
        class_n = frame.groupby("label").size()
        for (label, value), g in frame.groupby(["label", "value"], sort=True):
            n_class = int(class_n[label])
            out.append({"attribute": str(name), "value": value, "class": CLASS_NAMES[int(label)],
                        "count": int(len(g)), "share": len(g) / n_class,
                        "share_ci": as_interval(*wilson_interval(len(g), n_class)),
                        # 1.0 means drawn as often as under uniform sampling within the class.
                        "mean_weight_ratio": float(g["w"].mean() * n_class * class_n.size),
                        "mean_log_density": float(g["d"].mean()), "anomaly_rate": float(g["a"].mean())})
    return out


def anomaly_summary(samples: pd.DataFrame, cfg: AuditConfig, cutoffs: dict[int, float] | None = None,
                    top: int = 20) -> dict:
    """Counts and the top scores; `tail` and `cutoffs` (per class, the score from which samples were flagged)
    say what the count means."""
    flagged = samples[samples["is_anomaly"]]
    worst = samples.nlargest(top, "anomaly_score")
    return {"method": cfg.anomaly_on, "threshold": cfg.anomaly_threshold, "tail": cfg.anomaly_tail,
            "cutoffs": {CLASS_NAMES.get(c, str(c)): v for c, v in (cutoffs or {}).items()},
            "count": int(len(flagged)),
            "rate": float(len(flagged) / len(samples)),
            "by_class": {CLASS_NAMES[c]: int((flagged["label"] == c).sum()) for c in (1, 0)},
            "top": [{"index": int(r["index"]), "label": int(r["label"]), "anomaly_score": float(r["anomaly_score"])}
                    for _, r in worst.iterrows()]}
