"""Under-represented features: the latent directions that set each top subgroup apart from its class.

A feature used to be one latent dimension where the most up-weighted samples
differed; on faces those dimensions tracked hair while the dimensions that
tracked the planted minority were never flagged, and their "rare range" held
80-95% of the class.  Now each of a class's top-ranked subgroups (report.json's
`subgroups`, ranked by under-representation and error) gives one feature: the
unit vector from the mean latent vector of the rest of the class to the
subgroup's mean.  Along it:

  projection    (mu - rest mean) . direction: 0 at the rest's mean, the
                subgroup's members high;
  rare range    from halfway between the rest's and the subgroup's median
                projection up to the subgroup's largest: where the subgroup
                sits and the rest mostly does not, so it holds a minority of
                the class whenever the subgroup stands apart;
  name          the supplied attribute whose values explain most of the
                projection's variance within the class (eta squared), with its
                value of highest mean projection, e.g. skin_tone=dark;
  traversal     decoded along the direction from below the rest's median to
                past the subgroup's (pipeline.traversal); `traversal_change`
                is the mean absolute pixel change from its first image to its
                last, in [0, 1], and a strip under TRAVERSAL_MIN_CHANGE
                carries a note saying that it shows nothing and what to do.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .sampling import CLASS_NAMES
from .subgroups import attribute_codes

# Below this mean pixel change (images in [0, 1]) a strip looks like copies of one image: on real faces
# after 2 epochs every strip measured under 0.01 and showed nine identical blurs.
TRAVERSAL_MIN_CHANGE = 0.02
TRAVERSAL_STEPS = 9
FLAT_TRAVERSAL_NOTE = ("the decoded strip barely changes (mean pixel change {change:.3f} < {floor}): the decoder's "
                       "reconstructions are too poor to show this feature; train more epochs and audit again")


def subgroup_directions(mu: np.ndarray, labels: np.ndarray, subgroup_ids: np.ndarray, subgroups: list[dict],
                        attributes: pd.DataFrame | None = None, top_features: int = 5,
                        bins: int = 30) -> list[dict]:
    """One feature per top-ranked subgroup of each class (at most `top_features` a class), positives first.

    `subgroups` is report.json's ranked list (summarise_subgroups); a class with
    a single subgroup has nothing that stands apart and gets no feature.
    """
    mu, labels, ids = np.asarray(mu, dtype=np.float64), np.asarray(labels), np.asarray(subgroup_ids)
    codes = {} if attributes is None else {str(c): attribute_codes(attributes[c]) for c in attributes.columns}
    out: list[dict] = []
    for cls in sorted(np.unique(labels).tolist(), reverse=True):
        name = CLASS_NAMES.get(int(cls), str(cls))
        in_class = labels == cls
        class_sum, class_n = mu[in_class].sum(0), int(in_class.sum())
        class_codes = {column: (c[in_class], names) for column, (c, names) in codes.items()}
        # A subgroup holding half its class or more is the class itself, not something it lacks.
        ranked = [s for s in subgroups if s["class"] == name and not s.get("small") and s["share"] < 0.5]
        for rank, sg in enumerate(ranked[:top_features], 1):
            members = ids == sg["id"]
            rest = in_class & ~members
            feature = _direction(mu, members, class_sum, class_n)
            if feature is None:   # no rest of the class, or the means coincide
                continue
            direction, projection = feature
            p_class, p_sub, p_rest = projection[in_class], projection[members], projection[rest]
            lo = float((np.median(p_rest) + np.median(p_sub)) / 2)
            hi = float(p_sub.max())
            in_range = (p_class >= lo) & (p_class <= hi)
            entry = {"feature": len(out), "class": name, "rank": rank, "subgroup": int(sg["id"]),
                     "dimension": int(np.argmax(np.abs(direction))),
                     "direction_vector": [float(v) for v in direction],
                     "score": _separation(p_sub, p_rest), "direction": "high",
                     "rare_range": [lo, hi], "share_in_rare_range": float(in_range.mean()),
                     "subgroup_share_in_rare_range": float(((p_sub >= lo) & (p_sub <= hi)).mean()),
                     "rest_median": float(np.median(p_rest)), "subgroup_median": float(np.median(p_sub)),
                     "class_mean": float(p_class.mean()), "class_std": float(p_class.std()),
                     "histogram": _histogram(projection, labels, bins)}
            entry |= _best_attribute(p_class, class_codes)
            entry["name"] = (f"{entry['attribute']}={entry['attribute_value']}" if entry["attribute"]
                             else f"subgroup {sg['id']}")
            out.append(entry)
    return out


def _direction(mu: np.ndarray, members: np.ndarray, class_sum: np.ndarray,
               class_n: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(unit vector from the mean of the rest of the class to the subgroup's mean, every sample's projection
    on it); None when the means coincide. The rest's mean comes from the class's sum: no copy of the class."""
    n_members = int(members.sum())
    if not n_members or n_members == class_n:
        return None
    member_sum = mu[members].sum(0)
    origin = (class_sum - member_sum) / (class_n - n_members)
    diff = member_sum / n_members - origin
    norm = float(np.linalg.norm(diff))
    if norm <= 1e-12:
        return None
    direction = diff / norm
    return direction, mu @ direction - origin @ direction


def _separation(p_sub: np.ndarray, p_rest: np.ndarray) -> float:
    """Cohen's d of the projections: how far apart the subgroup and the rest sit, in pooled sd."""
    pooled = np.sqrt((p_sub.var() * len(p_sub) + p_rest.var() * len(p_rest)) / (len(p_sub) + len(p_rest)))
    return float((p_sub.mean() - p_rest.mean()) / max(pooled, 1e-12))


def _histogram(projection: np.ndarray, labels: np.ndarray, bins: int) -> dict:
    lo, hi = float(projection.min()), float(projection.max())
    edges = np.linspace(lo, hi if hi > lo else lo + 1e-6, bins + 1)
    return {"edges": edges.tolist(),
            "counts": {CLASS_NAMES.get(int(c), str(c)): np.histogram(projection[labels == c], edges)[0].tolist()
                       for c in np.unique(labels)}}


def _best_attribute(p: np.ndarray, codes: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict:
    """The attribute that explains most of the projection's variance (eta squared), and its highest value.

    codes: per attribute, (the class's codes, value names) from attribute_codes.
    """
    best = {"attribute": None, "attribute_value": None, "eta_squared": None}
    if not codes or p.var() <= 0:
        return best
    for column, (c, names) in codes.items():
        known = c >= 0
        counts = np.bincount(c[known], minlength=len(names)).astype(float)
        if known.sum() < 2 or (counts > 0).sum() < 2:
            continue
        x = p[known]
        held = counts > 0
        means = np.bincount(c[known], weights=x, minlength=len(names))[held] / counts[held]
        eta = float((counts[held] * (means - x.mean()) ** 2).sum() / max(((x - x.mean()) ** 2).sum(), 1e-12))
        if best["eta_squared"] is None or eta > best["eta_squared"]:
            best = {"attribute": column, "attribute_value": str(names[held][int(np.argmax(means))]),
                    "eta_squared": eta}
    return best


def traversal_values(feature: dict, steps: int = TRAVERSAL_STEPS) -> np.ndarray:
    """Projections to decode at: from half a gap below the rest's median to half a gap past the subgroup's."""
    a, b = feature["rest_median"], feature["subgroup_median"]
    gap = b - a
    return np.linspace(a - gap / 2, b + gap / 2, steps)


def traversal_change(images: np.ndarray) -> float:
    """Mean absolute pixel change from a strip's first image to its last, images scaled to [0, 1]."""
    images = np.asarray(images)
    scale = 255.0 if np.issubdtype(images.dtype, np.integer) else 1.0   # decoded strips are uint8
    return float(np.abs(images[-1].astype(np.float64) - images[0].astype(np.float64)).mean() / scale)


def traversal_note(change: float) -> str | None:
    return FLAT_TRAVERSAL_NOTE.format(change=change, floor=TRAVERSAL_MIN_CHANGE) if change < TRAVERSAL_MIN_CHANGE \
        else None


__all__ = ["subgroup_directions", "traversal_values", "traversal_change", "traversal_note",
           "TRAVERSAL_MIN_CHANGE", "TRAVERSAL_STEPS"]
