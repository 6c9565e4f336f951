"""One helper process (rank 1 .. N-1) of a service training job trained in N processes.

The job's own process is rank 0 (runners._train, DEBIAS_TRAIN_PROCESSES): it keeps the progress callback and
publishes the result; this one loads the same dataset from the service's cache and trains its share of every
batch (audit/distributed.py). It touches no database: everything it needs is in the spec file.

    python -m api.trainrank SPEC.json
"""
from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

from audit.models import ModelConfig
from audit.pipeline import train_model
from audit.reviews import Exclusion
from audit.training import TrainConfig

from .services import datasets as dataset_service
from .settings import Settings


def write_spec(path: Path, settings: Settings, dataset, model_cfg: ModelConfig, train_cfg: TrainConfig,
               out: Path, resume: bool, exclude: dict | None) -> Path:
    spec = {"settings": json.loads(settings.model_dump_json()),
            "dataset": {k: getattr(dataset, k) for k in ("id", "name", "image_size", "positive")},
            "model": model_cfg.to_dict(), "train": asdict(train_cfg), "out": str(out), "resume": resume,
            "exclude": exclude}
    path.write_text(json.dumps(spec))
    return path


def main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    settings = Settings(**spec["settings"])
    ds = dataset_service.load(settings, SimpleNamespace(**spec["dataset"]))
    exclude = Exclusion.of(spec["exclude"]["indices"], spec["exclude"]["label"]) if spec["exclude"] else None
    train_model(ds, Path(spec["out"]), ModelConfig(**spec["model"]), TrainConfig(**spec["train"]),
                resume=spec["resume"], progress=False, exclude=exclude)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
