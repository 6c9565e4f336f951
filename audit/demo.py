"""`debias demo`: the whole loop on synthetic biased faces, in a few minutes on a CPU."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from .comparison import format_paired, paired_comparison
from .evaluation import write_evaluation
from .models import ModelConfig
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


FULL = DemoSize(faces=3000, nonfaces=3000, test_per_class=600, image_size=64, epochs=6)
QUICK = DemoSize(faces=120, nonfaces=120, test_per_class=60, image_size=32, epochs=1)


def run_demo(out: Path, seed: int = 0, quick: bool = False, log=print) -> dict:
    size = QUICK if quick else FULL
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    log(f"debias demo -> {out} (device: {device_summary()})")

    train_ds = make_synthetic(size.faces, size.nonfaces, size.image_size, seed=seed)
    test_ds = make_synthetic(size.test_per_class, size.test_per_class, size.image_size, seed=seed + 1,
                             balanced=True)
    save_npz(train_ds, out / "train.npz")
    save_npz(test_ds, out / "test.npz")
    log(f"1/4 synthesised a biased training set ({len(train_ds)} images: 5% dark-skinned faces, "
        f"5% face-like objects among non-faces) and a balanced test set ({len(test_ds)})")

    metrics = {}
    for method in ("standard", "dbvae"):
        t = time.perf_counter()
        model_dir = out / "models" / method
        train_model(train_ds, model_dir, ModelConfig(method=method, image_size=size.image_size),
                    TrainConfig(epochs=size.epochs, seed=seed, **default_error_options(method, size.epochs)),
                    resume=model_dir.exists(), progress=True)
        log(f"2/4 trained {method} for {size.epochs} epochs in {time.perf_counter() - t:.0f}s -> {model_dir}")
        metrics[method] = evaluate_model(model_dir, test_ds, GROUP_BY)
        write_evaluation(out / f"metrics_{method}.json", metrics[method])

    audit_dir = out / "audit"
    result = audit_dataset(train_ds, out / "models" / "dbvae", audit_dir, AuditConfig())
    from .cli import summarise_audit
    log("3/4 " + summarise_audit(result.report, audit_dir))

    log("4/4 accuracy per group on the balanced test set (label x skin_tone x kind):")
    # Paired: both models scored on the same test images (McNemar, paired bootstrap).
    paired = paired_comparison(metrics["standard"], metrics["dbvae"], ("standard", "dbvae"))
    log(format_paired(paired))
    for note in paired["warnings"]:
        log(f"warning: {note}")
    log(f"figures: {', '.join(str(audit_dir / f) for f in result.report['figures'].values())}")
    log(f"done in {time.perf_counter() - started:.0f}s")
    return {"metrics": metrics, "report": result.report}
