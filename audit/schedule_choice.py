"""--error-schedule auto: train both error schedules and keep the one the held-out data prefers.

Neither schedule wins everywhere (README "Debiasing on real images"): on Colored MNIST the geometric one
lifts the worst group by about 0.2, on the planted faces it loses to the constant one. Which one a
dataset needs shows on its validation split without any group labels: the held-out worst inferred group
(class x error set, `val_worst_inferred_group_accuracy`) at the last epoch picked the better schedule in
every seed where they differed (bench/selection_bench.py, bench/out/selection_bench.txt).

Both runs are identical until the error set is first used with a multiplier above the constant one, so
the geometric run starts from the constant run's checkpoints up to `error_epoch`: the cost is
epochs + (epochs - error_epoch) epochs, not twice the epochs.

MODEL_DIR/ holds the chosen run's files (as any model directory) and schedule_choice.json; the two runs
stay in MODEL_DIR/schedules/{constant,geometric}/.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

from .checkpoint import checkpoint_path, latest_checkpoint, write_json
from .errors import DebiasError
from .training import ERROR_SET_FILE, TrainResult, train

CHOICE_FILE = "schedule_choice.json"
CRITERION = "val_worst_inferred_group_accuracy"
SCHEDULES = ("constant", "geometric")   # the first wins ties: it is the default


def check_choosable(cfg) -> None:
    """The choice needs an error set with epochs after it and a validation split to measure it on."""
    if not cfg.error_upweight:
        raise DebiasError("--error-schedule auto chooses how the error set is upweighted: set error_upweight > 0")
    if cfg.val_fraction <= 0:
        raise DebiasError("--error-schedule auto chooses on the held-out samples: set val_fraction > 0")


def has_started(out_dir) -> bool:
    """Whether either schedule's run in `out_dir` checkpointed an epoch (a retry should resume it)."""
    return any(latest_checkpoint(Path(out_dir) / "schedules" / s) is not None for s in SCHEDULES)


def _seed_from(source: Path, target: Path, epochs: int) -> None:
    """Start `target` from `source`'s first `epochs` checkpoints and its error set (where they are identical)."""
    for epoch in range(1, epochs + 1):
        src = checkpoint_path(source, epoch)
        if not src.is_file():
            raise DebiasError(f"{src} is missing: the constant-schedule run did not finish epoch {epoch}")
        checkpoint_path(target, epoch).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, checkpoint_path(target, epoch))
    if (source / ERROR_SET_FILE).is_file():
        shutil.copy2(source / ERROR_SET_FILE, target / ERROR_SET_FILE)


def train_choosing_schedule(dataset, model_cfg, cfg, out_dir: Path, resume: bool = False, progress: bool = True,
                            callback=None) -> TrainResult:
    check_choosable(cfg)
    runs = Path(out_dir) / "schedules"
    results: dict[str, TrainResult] = {}
    # The whole job in epochs: the constant run's, then the geometric run's after the shared ones.
    total = cfg.epochs + cfg.epochs - cfg.error_epoch
    for schedule in SCHEDULES:
        run_dir = runs / schedule
        again = resume and latest_checkpoint(run_dir) is not None
        if schedule != SCHEDULES[0] and not again:
            _seed_from(runs / SCHEDULES[0], run_dir, cfg.error_epoch)
            again = True
        before = 0 if schedule == SCHEDULES[0] else cfg.epochs - cfg.error_epoch

        def report(epoch, step, steps, metrics, schedule=schedule, before=before):
            done = before + epoch - 1 + step / steps
            callback(epoch, step, steps, {**metrics, "schedule_run": schedule, "fraction_done": done / total})

        results[schedule] = train(dataset, model_cfg, replace(cfg, error_schedule=schedule), run_dir,
                                  resume=again, progress=progress, callback=report if callback else None)
    scores = {s: r.history[-1].get(CRITERION) for s, r in results.items()}
    # A held-out split without error-set members has no inferred groups: keep the default then.
    chosen = max(SCHEDULES, key=lambda s: (scores[s] if scores[s] is not None else -1.0, -SCHEDULES.index(s)))
    source = runs / chosen
    for item in source.iterdir():
        target = Path(out_dir) / item.name
        if item.is_dir():
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(item, target)
        else:
            shutil.copy2(item, target)
    write_json(Path(out_dir) / CHOICE_FILE, {"chosen": chosen, "criterion": CRITERION, "scores": scores,
                                             "runs": {s: f"schedules/{s}" for s in SCHEDULES}})
    return results[chosen]


def describe_choice(model_dir) -> str:
    """One line: which schedule was kept and the held-out figures it was chosen on."""
    choice = json.loads((Path(model_dir) / CHOICE_FILE).read_text())
    figures = ", ".join(f"{s} {v:.3f}" if v is not None else f"{s} n/a" for s, v in choice["scores"].items())
    return (f"kept the {choice['chosen']} error schedule: held-out worst inferred group {figures} "
            f"(both runs in {Path(model_dir) / 'schedules'})")
