"""`debias demo`: the whole loop on synthetic biased faces, in a few minutes on a CPU."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from .comparison import format_paired, paired_comparison
from .evaluation import write_evaluation
from .models import ModelConfig
from .modelset import evaluate_set, members, train_set
from .pipeline import audit_dataset, device_summary, evaluate_model, train_model
from .report import AuditConfig
from .synth import make_synthetic, save_npz
from .training import TrainConfig, default_error_options

GROUP_BY = ["skin_tone", "kind"]


@dataclass
class DemoSize:
    faces: int
    nonfaces: int
    test_per_class: int
    image_size: int
    epochs: int
    n_seeds: int = 1  # models per method; more than one trains a model set (audit.modelset)


# Two seeds per method, so the comparison shows mean +- sd across seeds: the demo stays under 3 minutes on
# 2 cores with them (README); each seed adds its training time again.
FULL = DemoSize(faces=3000, nonfaces=3000, test_per_class=600, image_size=64, epochs=6, n_seeds=2)
QUICK = DemoSize(faces=120, nonfaces=120, test_per_class=60, image_size=32, epochs=1)


COMPARISON_FILE = "comparison.txt"  # the printed comparison, kept with the demo's other outputs
STEPS = 5


def run_demo(out: Path, seed: int = 0, quick: bool = False, n_seeds: int | None = None, log=print,
             progress: bool = True) -> dict:
    """The whole loop; with `n_seeds` > 1 each method is a model set of seeds seed, seed + 1, ...

    progress: training progress bars (the CLI turns them off when stderr is not a terminal).
    """
    from .cli import plural, summarise_audit
    size = QUICK if quick else FULL
    n_seeds = size.n_seeds if n_seeds is None else n_seeds
    seeds = list(range(seed, seed + n_seeds))
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    log(f"debias demo -> {out} (device: {device_summary()})")

    train_ds = make_synthetic(size.faces, size.nonfaces, size.image_size, seed=seed)
    test_ds = make_synthetic(size.test_per_class, size.test_per_class, size.image_size, seed=seed + 1,
                             balanced=True)
    save_npz(train_ds, out / "train.npz")
    save_npz(test_ds, out / "test.npz")
    log(f"1/{STEPS} synthesised a biased training set ({plural(len(train_ds), 'image')}: 5% dark-skinned faces, "
        f"5% face-like objects among non-faces) and a balanced test set ({len(test_ds)})")

    metrics = {}
    for step, method in enumerate(("standard", "dbvae"), start=2):
        t = time.perf_counter()
        model_dir = out / "models" / method
        model_cfg = ModelConfig(method=method, image_size=size.image_size)
        train_cfg = TrainConfig(epochs=size.epochs, seed=seed, **default_error_options(method, size.epochs))
        if len(seeds) > 1:
            train_set(train_ds, model_dir, model_cfg, train_cfg, seeds, resume=model_dir.exists(), progress=progress)
            metrics[method] = evaluate_set(model_dir, test_ds, GROUP_BY)
        else:
            train_model(train_ds, model_dir, model_cfg, train_cfg, resume=model_dir.exists(), progress=progress)
            metrics[method] = evaluate_model(model_dir, test_ds, GROUP_BY)
        log(f"{step}/{STEPS} trained {method} for {plural(size.epochs, 'epoch')}"
            f"{f' x {len(seeds)} seeds' if len(seeds) > 1 else ''} "
            f"in {time.perf_counter() - t:.0f}s -> {model_dir}")
        write_evaluation(out / f"metrics_{method}.json", metrics[method])

    audit_dir = out / "audit"
    dbvae_dir = out / "models" / "dbvae"
    audited = members(dbvae_dir)[0][1] if len(seeds) > 1 else dbvae_dir  # a set: its first seed's latent space
    result = audit_dataset(train_ds, audited, audit_dir, AuditConfig(), progress=progress)
    log(f"4/{STEPS} " + summarise_audit(result.report, audit_dir))

    # Paired: both models scored on the same test images (McNemar, paired bootstrap).
    paired = paired_comparison(metrics["standard"], metrics["dbvae"], ("standard", "dbvae"))
    comparison = "\n".join(["accuracy per group on the balanced test set (label x skin_tone x kind):",
                            format_paired(paired), *(f"warning: {note}" for note in paired["warnings"])])
    (out / COMPARISON_FILE).write_text(comparison + "\n")
    log(f"{STEPS}/{STEPS} {comparison}")
    log(f"comparison saved to {out / COMPARISON_FILE}")
    log(f"figures: {', '.join(str(audit_dir / f) for f in result.report['figures'].values())}")
    log(f"done in {time.perf_counter() - started:.0f}s")
    return {"metrics": metrics, "report": result.report}
