"""Multi-process training (DistributedDataParallel on gloo): the same model as one process, within float
tolerance; what it cannot do is refused in one line."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from audit.cli import main
from audit.distributed import Ranks
from audit.models import ModelConfig
from audit.pipeline import train_model
from audit.training import TrainConfig, default_error_options

SMALL = ["--image-size", "16", "--latent-dim", "8", "--batch-size", "8", "--no-progress"]
# Two gloo ranks against one process after epoch 1 (6 Adam steps; the ERM warm-up, so both draw the same
# batches): the batch-norm statistics and the gradient are summed in another order (two halves of the batch,
# each with its own convolution algorithm, then all-reduced). Most weights stay within ~1e-4 (99% within
# 1.3e-4 measured on an AMD EPYC; 1 process on 1 vs 2 threads: 9.5e-5). A weight whose gradient is near zero
# can take Adam's normalised step (about the learning rate, 5e-4) the other way: at most a few such steps
# apart (1.3e-3 measured; 9.3e-5 on another CPU). From epoch 2 on, the per-epoch histogram density can put a
# sample in the next bin and the runs draw other batches: the same as any change of summation order, so the
# later epochs are compared by their decisions (the error set), not by their weights.
TYPICAL, MOST = 2e-4, 0.99
ADAM_STEPS_APART = 4 * 5e-4


def _ranks_train(data, out, *extra) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    return subprocess.run([sys.executable, "-m", "audit.cli", "train", str(data), "--out", str(out), *SMALL,
                           "--nproc", "2", *extra], capture_output=True, text=True, env=env, timeout=600)


def _weights(model_dir, epoch=None):
    path = model_dir / ("model.pt" if epoch is None else f"checkpoints/epoch-{epoch:04d}.pt")
    return torch.load(path, weights_only=True)["model"]


def test_each_rank_gets_a_balanced_share_and_together_the_whole_batch():
    labels = np.array([1, 0] * 8)
    batch = np.array([0, 2, 4, 6, 1, 3, 5, 7, 9, 11])            # 4 positives, 6 negatives
    shares = [Ranks(rank=r, world=2, local_rank=r).share(batch, labels) for r in (0, 1)]
    assert sorted(np.concatenate(shares).tolist()) == list(range(10))
    assert [int(labels[batch[s]].sum()) for s in shares] == [2, 2]
    assert [int((labels[batch[s]] == 0).sum()) for s in shares] == [3, 3]
    chunks = [Ranks(rank=r, world=3, local_rank=r).chunk(10) for r in range(3)]
    assert [c.tolist() for c in chunks] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_two_gloo_processes_train_what_one_process_trains(tiny_dataset, tiny_npz, tmp_path):
    # A constant rate: the stop before --resume below is simulated by a run of fewer --epochs, and a cosine
    # rate depends on the total (epoch 1, compared with one process, has the same rate either way).
    constant = ("--lr-schedule", "constant")
    done = _ranks_train(tiny_npz, tmp_path / "two", "--epochs", "3", *constant)
    assert done.returncode == 0, done.stderr
    # Rank 0 speaks for the run: one summary line.
    assert done.stdout.count("trained dbvae for 3 epochs") == 1
    one = train_model(tiny_dataset, tmp_path / "one", ModelConfig(method="dbvae", image_size=16, latent_dim=8),
                      TrainConfig(epochs=3, batch_size=8, **default_error_options("dbvae", 3)), progress=False)
    two, one_at_1 = _weights(tmp_path / "two", 1), _weights(tmp_path / "one", 1)
    apart = torch.cat([(value.float() - two[name].float()).abs().flatten() for name, value in one_at_1.items()
                       if value.is_floating_point()])
    assert float((apart <= TYPICAL).float().mean()) >= MOST
    assert float(apart.max()) <= ADAM_STEPS_APART
    # The same error set and sampling decisions; the history's figures are the whole batch's.
    assert (np.load(tmp_path / "one" / "error_set.npy") == np.load(tmp_path / "two" / "error_set.npy")).all()
    history = json.loads((tmp_path / "two" / "history.json").read_text())
    mine, theirs = history[0], one.history[0]
    assert mine["loss"] == pytest.approx(theirs["loss"], rel=1e-3)   # 3.9e-4 apart measured
    assert mine["accuracy"] == pytest.approx(theirs["accuracy"], abs=1e-9)

    # --resume: a run stopped after epoch 2 and resumed in two processes ends where the straight one did.
    assert _ranks_train(tiny_npz, tmp_path / "resumed", "--epochs", "2", *constant).returncode == 0
    done = _ranks_train(tiny_npz, tmp_path / "resumed", "--epochs", "3", "--resume", *constant)
    assert done.returncode == 0, done.stderr
    resumed, straight = _weights(tmp_path / "resumed"), _weights(tmp_path / "two")
    for name, value in straight.items():
        assert torch.allclose(value.float(), resumed[name].float(), atol=1e-6), name


@pytest.mark.parametrize("extra, message", [
    (["--decoder", "adversarial"], "the adversarial decoder trains in one process only"),
    (["--seeds", "0,1"], "--seeds trains a model set one model at a time; drop --nproc"),
    (["--error-schedule", "auto"], "--error-schedule auto trains in one process only"),
    (["--batch-size", "3", "--nproc", "3"], "batch_size 3 holds 1 positives, fewer than the 3 processes"),
])
def test_what_several_processes_cannot_do_is_refused_in_one_line(tiny_npz, tmp_path, capsys, extra, message):
    argv = ["train", str(tiny_npz), "--out", str(tmp_path / "m"), "--image-size", "16", "--nproc", "2", *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "m").exists()


def test_this_process_as_rank_zero_with_a_helper_then_itself_again(tiny_dataset, tiny_npz, tmp_path):
    # How a service job trains in several processes: it stays rank 0 (its callback runs here), a helper is rank 1.
    import torch.distributed as dist

    from audit.distributed import train_as_rank_zero

    out = tmp_path / "m"
    helper = [sys.executable, "-m", "audit.cli", "train", str(tiny_npz), "--out", str(out), *SMALL, "--epochs", "2"]
    steps = []
    result = train_as_rank_zero(helper, 2, lambda: train_model(
        tiny_dataset, out, ModelConfig(method="dbvae", image_size=16, latent_dim=8),
        TrainConfig(epochs=2, batch_size=8, **default_error_options("dbvae", 2)), progress=False,
        callback=lambda *a: steps.append(a[:2])))
    assert len(result.history) == 2 and steps[-1] == (2, 6)
    assert json.loads((out / "config.json").read_text())["training"]["world_size"] == 2
    assert not dist.is_initialized() and "WORLD_SIZE" not in os.environ and "RANK" not in os.environ
