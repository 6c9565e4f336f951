"""Does splitting off a class's rarest share before clustering find a planted minority's subgroup?

Synthetic latent means (16 dimensions, 1,000 samples, a 2% minority planted `distance` standard deviations
away with `spread` times the majority's spread: audit.synth.planted_latents, as the tests use it), the
local outlier factor as under_representation (as the audit without an error set). Per setting and seed it
prints the minority's share of the top-ranked subgroup, found two ways:

  whole     Gaussian mixtures on the whole class (the audit before the split)
  audit     audit.subgroups.find_subgroups: the whole class first, and its rarest 5% clustered apart
            when no whole-class subgroup is rare (few and outlying); "split" marks where it was

    python bench/subgroup_split.py
"""
from __future__ import annotations

import numpy as np

from audit.local_outliers import local_outlier_factor
from audit.subgroups import (
    STRATUM_RAREST,
    SubgroupFinder,
    find_subgroups,
    summarise_subgroups,
    under_representation,
)
from audit.synth import planted_latents


def top_share(ids: np.ndarray, labels, under, rare, strata=None) -> float:
    top = summarise_subgroups(ids, labels, np.full(len(ids), 1 / len(ids)), under, strata=strata)[0]
    return float(rare[ids == top["id"]].mean())


def main() -> None:
    print("minority's share of the top subgroup, whole-class clusters -> the audit's (seeds 0-2)")
    found = {"whole": [], "audit": []}
    for distance in (3.5, 4.0, 5.0, 6.0, 8.0):
        for spread in (0.5, 0.7, 1.0):
            cells = []
            for seed in range(3):
                mu, rare = planted_latents(np.random.default_rng(seed), 1000, share=0.02, distance=distance,
                                           spread=spread)
                labels = np.ones(len(mu), int)
                under = under_representation(np.zeros(len(mu)), labels, local=local_outlier_factor(mu, labels))
                whole = top_share(SubgroupFinder().fit_predict(mu, labels), labels, under, rare)
                finder = SubgroupFinder()
                strata = find_subgroups(finder, mu, labels, under)
                audit = top_share(finder.labels_, labels, under, rare, strata)
                found["whole"].append(whole)
                found["audit"].append(audit)
                split = " split" if (strata == STRATUM_RAREST).any() else ""
                cells.append(f"{whole:.2f} -> {audit:.2f}{split}")
            print(f"distance {distance} spread {spread}: " + "; ".join(cells), flush=True)
    for way, shares in found.items():
        shares = np.array(shares)
        print(f"{way}: the top subgroup is mostly the minority (>= 0.5) in {(shares >= 0.5).sum()} of {len(shares)} "
              f"runs, enriched 5x or more (>= 0.1) in {(shares >= 0.1).sum()}")


if __name__ == "__main__":
    main()
