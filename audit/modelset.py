"""Model sets: one model per training seed, evaluated and compared as one.

A single training run is one draw of the seed; reviewers expect mean +- sd over several.
`debias train --seeds 0,1,2 --out DIR` writes a model set:

    DIR/
      model_set.json   {"seeds": [0, 1, 2], "members": ["seed-0", "seed-1", "seed-2"], "method": ..., "version": ...}
      seed-0/          a model directory like any other (config.json, model.pt, checkpoints/)
      seed-1/ ...

The manifest is written last: a folder without it is not (yet) a model set.

An evaluation of a model set keeps the usual JSON keys for the POOLED predictions (every
member's per-sample predictions concatenated, so the intervals are over members x samples)
and adds `seeds` (per member: worst group, its accuracy, overall accuracy, gap) and
`across_seeds` (mean and sd over seeds of those and of each group's accuracy). Its predictions
file has one block of rows per member, in seed order, with a `seed` column.

The pooled intervals treat every (member, image) row as independent: they say how precisely the
set's average behaviour on this test set is known, not how much a new seed would vary; the
sd across seeds says the latter.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from .checkpoint import write_json
from .errors import DebiasError
from .evaluation import DEFAULTS, summarise

MANIFEST = "model_set.json"
MAX_SEED = 2**32 - 1
MAX_SEEDS = 100


def member_name(seed: int) -> str:
    return f"seed-{seed}"


def parse_seeds(text: str) -> list[int]:
    """"0,1,2" -> [0, 1, 2]; empty, non-integer, negative, too large or repeated seeds are refused."""
    parts = [p.strip() for p in str(text).split(",")]
    if not any(parts):
        raise DebiasError("--seeds is empty; give comma-separated whole numbers, e.g. --seeds 0,1,2")
    seeds = []
    for p in parts:
        if not re.fullmatch(r"[+-]?[0-9]+", p):
            raise DebiasError(f"--seeds: {p!r} is not a whole number; give e.g. --seeds 0,1,2")
        seed = int(p)
        if not 0 <= seed <= MAX_SEED:
            raise DebiasError(f"--seeds: {seed} is out of range; seeds are whole numbers from 0 to {MAX_SEED}")
        seeds.append(seed)
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise DebiasError(f"--seeds repeats {', '.join(map(str, repeated))}; each seed trains one model, "
                          f"give each once")
    if len(seeds) > MAX_SEEDS:
        raise DebiasError(f"--seeds lists {len(seeds)} seeds; at most {MAX_SEEDS}")
    return seeds


def is_model_set(path: str | Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def read_manifest(path: str | Path) -> dict:
    """The checked manifest of the model set at `path` (members are folder names inside it)."""
    path = Path(path)
    source = path / MANIFEST
    try:
        manifest = json.loads(source.read_text())
    except FileNotFoundError:
        raise DebiasError(f"{path} is not a model set (no {MANIFEST}); train one with `debias train --seeds`") \
            from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DebiasError(f"{source} is not JSON ({getattr(exc, 'msg', exc)}); train the set again") from None
    seeds, names = (manifest.get("seeds"), manifest.get("members")) if isinstance(manifest, dict) else (None, None)
    ok = (isinstance(seeds, list) and isinstance(names, list) and 0 < len(seeds) == len(names)
          and all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_SEED for s in seeds)
          and len(set(seeds)) == len(seeds)
          and all(isinstance(n, str) and n and Path(n).name == n and n not in (".", "..") for n in names))
    if not ok:
        raise DebiasError(f"{source} must list 'seeds' (distinct whole numbers) and 'members' (folder names "
                          f"inside the set), one per seed; train the set again")
    return manifest


def members(path: str | Path) -> list[tuple[int, Path]]:
    """[(seed, member model directory), ...] of the model set at `path`, in the manifest's order."""
    path = Path(path)
    manifest = read_manifest(path)
    found = [(seed, path / name) for seed, name in zip(manifest["seeds"], manifest["members"])]
    missing = [str(d) for _, d in found if not d.is_dir()]
    if missing:
        raise DebiasError(f"model set {path} lacks member folder(s) {', '.join(missing)}; train the set again")
    return found


def train_set(dataset, out_dir: str | Path, model_cfg, train_cfg, seeds: list[int], resume: bool = False,
              progress: bool = True, callback=None, log=None, exclude=None, choose_schedule: bool = False) -> dict:
    """Train one model per seed into OUT/seed-N (audit.pipeline.train_model), then write the manifest.

    On a CPU with several cores the members train side by side, one process each (audit/memberpool.py),
    unless a `callback` must see their progress. Returns {seed: TrainResult}. With `resume`, members already
    trained are continued (a finished member is left as it is), the others started; the seeds must be those
    of an existing manifest.
    `exclude` (audit.reviews.Exclusion) leaves the same samples out of every member.
    """
    from . import distributed
    from .checkpoint import load_model
    from .memberpool import ENV, member_processes, member_work, train_side_by_side
    from .models import pick_device
    from .pipeline import check_new_model_dir, train_model
    from .training import TrainResult
    seeds = parse_seeds(",".join(map(str, seeds)))
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DebiasError(f"{out_dir} exists and is not a folder; choose a new --out")
    check_new_model_dir(out_dir, resume)
    if resume and is_model_set(out_dir) and read_manifest(out_dir)["seeds"] != seeds:
        raise DebiasError(f"{out_dir} is a model set of seeds {read_manifest(out_dir)['seeds']}, not {seeds}; "
                          f"resume with the same --seeds or choose a new --out")
    jobs = {}
    for seed in seeds:
        member = out_dir / member_name(seed)
        again = resume and (member / "checkpoints").is_dir() and any((member / "checkpoints").iterdir())
        jobs[seed] = dict(dataset=dataset, member=member, model_cfg=model_cfg,
                          train_cfg=replace(train_cfg, seed=seed), resume=again, exclude=exclude,
                          choose_schedule=choose_schedule)
    device = pick_device(train_cfg.device)
    processes = member_processes(len(seeds), device.type, dataset.images.nbytes,
                                 one_process_only=callback is not None or distributed.current() is not None,
                                 work=member_work(train_cfg.epochs, len(dataset), dataset.image_size))
    if processes > 1:
        if log:
            log(f"seeds {', '.join(map(str, seeds))}: {processes} at a time, side by side in processes "
                f"(set {ENV}=1 for one after another)")
        out_dir.mkdir(parents=True, exist_ok=True)
        trained = train_side_by_side(jobs, processes)
        results = {seed: TrainResult(load_model(jobs[seed]["member"], device)[0], *trained[seed]) for seed in seeds}
    else:
        results = {}
        for i, seed in enumerate(seeds):
            job = jobs[seed]
            if log:
                log(f"seed {seed} ({i + 1} of {len(seeds)}) -> {job['member']}")
            results[seed] = train_model(job["dataset"], job["member"], model_cfg, job["train_cfg"],
                                        resume=job["resume"], progress=progress, callback=callback,
                                        exclude=exclude, choose_schedule=choose_schedule)
    from . import __version__
    write_json(out_dir / MANIFEST, {"seeds": seeds, "members": [member_name(s) for s in seeds],
                                    "method": model_cfg.method, "version": __version__})
    return results


def evaluate_set(path: str | Path, dataset, group_by: list[str], device=None, **options) -> dict:
    """Evaluate every member on `dataset`: the pooled evaluation plus `seeds` and `across_seeds`."""
    from .pipeline import evaluate_model
    path = Path(path)
    found = members(path)
    evaluated = [evaluate_model(member, dataset, group_by, device) for _, member in found]
    return combine(evaluated, [seed for seed, _ in found], path, **options)


def combine(evaluated: list[dict], seeds: list[int], path: str | Path | None = None, **options) -> dict:
    """One evaluation per member (same dataset, same group_by) -> the model set's evaluation."""
    first = evaluated[0]
    for m in evaluated[1:]:
        if m["dataset_fingerprint"] != first["dataset_fingerprint"] or m["group_by"] != first["group_by"]:
            raise DebiasError("the members of a model set were evaluated on different data or groupings")
    frames = [m["predictions"].assign(seed=seed) for m, seed in zip(evaluated, seeds)]
    pooled = pd.concat(frames, ignore_index=True)
    metrics = {**first, **summarise(pooled, first["group_by"], **options), "predictions": pooled}
    metrics["model"] = {**first.get("model", {}), "path": None if path is None else str(path)}
    metrics["model_set"] = {"path": None if path is None else str(path), "seeds": list(seeds),
                            "members": [Path(m.get("model", {}).get("path") or member_name(s)).name
                                        for m, s in zip(evaluated, seeds)],
                            "pooled": "every member's per-sample predictions concatenated; intervals over "
                                      "members x samples"}
    metrics.update(seed_summaries(pooled, first["group_by"], seeds, **options))
    return metrics


def seed_blocks(metrics: dict) -> list[tuple[int | None, pd.DataFrame]]:
    """[(seed, that member's predictions)] of an evaluation; a single model is one block, seed None."""
    frame = metrics["predictions"]
    ms = metrics.get("model_set")
    if not ms or "seed" not in frame.columns:
        return [(None, frame)]
    return [(seed, frame[frame["seed"].to_numpy() == seed].reset_index(drop=True)) for seed in ms["seeds"]]


def seed_summaries(pooled: pd.DataFrame, group_by: list[str], seeds: list[int], **options) -> dict:
    """`seeds` (per member point values) and `across_seeds` (mean, sd) for the pooled predictions."""
    opts = {k: options.get(k, DEFAULTS[k]) for k in ("min_group_size", "include_small")}
    per_seed, group_acc = [], {}
    for seed in seeds:
        # Point values only: one resample, its intervals discarded (the pooled ones are reported).
        s = summarise(pooled[pooled["seed"].to_numpy() == seed], group_by, n_boot=1, **opts)
        per_seed.append({"seed": int(seed), "worst_group": s["worst_group"],
                         "worst_group_accuracy": s["worst_group_accuracy"],
                         "overall_accuracy": s["overall"]["accuracy"], "accuracy_gap": s["accuracy_gap"]})
        for g in s["groups"]:
            group_acc.setdefault(json.dumps(g["group"], sort_keys=True), []).append(g["accuracy"])
    pooled_groups = summarise(pooled, group_by, n_boot=1, **opts)["groups"]  # the pooled table's order
    across = {"n_seeds": len(seeds),
              "sd": "sample standard deviation over seeds (n - 1); null with one seed",
              **{key: mean_sd([s[key] for s in per_seed])
                 for key in ("worst_group_accuracy", "overall_accuracy", "accuracy_gap")},
              "groups": [{"group": g["group"], **mean_sd(group_acc[json.dumps(g["group"], sort_keys=True)])}
                         for g in pooled_groups]}
    return {"seeds": per_seed, "across_seeds": across}


def mean_sd(values) -> dict:
    """{"mean", "sd", "n"} of per-seed values; sd is the sample sd (n - 1), None for one value."""
    values = np.asarray(values, dtype=float)
    sd = float(values.std(ddof=1)) if len(values) > 1 else None
    return {"mean": float(values.mean()), "sd": sd, "n": int(len(values))}


def pair_members(a: dict, b: dict) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Align two evaluations' predictions row by row for a paired comparison.

    Pairing needs the same samples, and a model set scores each sample once per member. So:
    - both sides list the same seeds: member seed s of A is paired with member seed s of B
      ("seed-matched"; the blocks are stacked in A's seed order);
    - otherwise (a single model against a set, or sets of different seeds): every member of A is
      paired with every member of B ("all pairs", pooled), k_A x k_B blocks stacked.
    Two single models give one block: the plain paired comparison. Returns (A rows, B rows, pairing).
    """
    blocks_a, blocks_b = seed_blocks(a), seed_blocks(b)
    seeds_a, seeds_b = [s for s, _ in blocks_a], [s for s, _ in blocks_b]
    if len(blocks_a) == len(blocks_b) == 1:
        pairs, mode = [(0, 0)], "single"
    elif None not in seeds_a and None not in seeds_b and sorted(seeds_a) == sorted(seeds_b):
        pairs, mode = [(i, seeds_b.index(s)) for i, s in enumerate(seeds_a)], "seed-matched"
    else:
        pairs, mode = [(i, j) for i in range(len(blocks_a)) for j in range(len(blocks_b))], "all pairs"
    rows_a = pd.concat([blocks_a[i][1] for i, _ in pairs], ignore_index=True)
    rows_b = pd.concat([blocks_b[j][1] for _, j in pairs], ignore_index=True)
    pairing = {"mode": mode, "pairs": [[seeds_a[i], seeds_b[j]] for i, j in pairs],
               "n_samples": int(len(blocks_a[0][1]))}
    return rows_a, rows_b, pairing


def across_seeds_of(metrics: dict, **options) -> dict:
    """Per-seed worst-group accuracy of one side of a comparison, recomputed with the compare's options."""
    opts = {k: options.get(k, DEFAULTS[k]) for k in ("min_group_size", "include_small")}
    values = []
    seeds = []
    for seed, frame in seed_blocks(metrics):
        values.append(summarise(frame, metrics["group_by"], n_boot=1, **opts)["worst_group_accuracy"])
        seeds.append(seed)
    return {"seeds": seeds, "worst_group_accuracy": values, **mean_sd(values)}


def format_mean_sd(stat: dict, scale: float = 1.0, digits: int = 3) -> str:
    """0.812 +- 0.010 (3 seeds); a single value has no sd."""
    if stat["sd"] is None or not math.isfinite(stat["sd"]):
        return f"{stat['mean'] * scale:.{digits}f} (1 seed)"
    return f"{stat['mean'] * scale:.{digits}f} +- {stat['sd'] * scale:.{digits}f} ({stat['n']} seeds)"


__all__ = ["MANIFEST", "parse_seeds", "is_model_set", "read_manifest", "members", "train_set", "evaluate_set",
           "combine", "seed_blocks", "seed_summaries", "mean_sd", "pair_members", "across_seeds_of",
           "format_mean_sd", "member_name"]
