"""`debias` command line: a thin client of audit.pipeline.

Bad input prints one line and exits with code 2, never a traceback.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

from . import __version__
from .errors import DebiasError
from .limits import MAX_DECODED_BYTES, MAX_SAMPLES, MAX_ZIP_BYTES, MAX_ZIP_ENTRIES

EXIT_BAD_INPUT = 2


def plural(n: int, word: str) -> str:
    """ "1 epoch", "2 epochs": counts in messages read as written English."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):  # float() reads "nan" and "inf": options never mean them
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a number >= {minimum}, got {value}")
        return value
    return parse


_positive_int = _int_at_least(1)


def _positive_float(text: str) -> float:
    value = _finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value
_non_negative_int = _int_at_least(0)


def _value_pair(text: str) -> tuple[str, str]:
    """"A:B" -> (A, B), two different attribute values."""
    parts = [p.strip() for p in text.split(":")]
    if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
        raise argparse.ArgumentTypeError(f"expected two different attribute values as A:B (e.g. light:dark), "
                                         f"got {text!r}")
    return parts[0], parts[1]


def _add_data_options(p: argparse.ArgumentParser, image_size_default: int | None = 64) -> None:
    p.add_argument("--image-size", type=_positive_int, default=image_size_default,
                   help="resize images to this side, a multiple of 16" +
                        (" (default: the model's)" if image_size_default is None else ""))
    p.add_argument("--positive", help="for a folder with one sub-folder per class: the positive class folder "
                                      "(default: the folder named face, positive, 1, ...)")
    # The loaders' bounds on hostile input, the service's defaults; raised here for a large dataset of one's own.
    p.add_argument("--max-samples", type=_positive_int, default=MAX_SAMPLES,
                   help=f"refuse a dataset of more images than this (default: {MAX_SAMPLES:,})")
    p.add_argument("--max-decoded-gib", type=_positive_float, default=MAX_DECODED_BYTES / 2 ** 30,
                   help="refuse a dataset whose decoded images (N x size x size x 3 bytes) would take more than "
                        f"this many GiB (default: {MAX_DECODED_BYTES / 2 ** 30:g}); larger ones are memory-mapped "
                        "from a cache, see DEBIAS_CACHE_DIR")


DATA_HELP = "dataset: .npz, .h5, .zip or a folder (see `debias pack --help`)"
DEVICE_HELP = "cpu, cuda, cuda:1, ... (default: cuda when present, else cpu)"


def _add_progress_option(p: argparse.ArgumentParser, *aliases: str) -> None:
    p.add_argument("--no-progress", *aliases, action="store_true", dest="no_progress",
                   help="no progress bars (also when stderr is not a terminal, so logs stay small)")


def _progress(args) -> bool:
    """Progress bars only for a person watching: a log file would fill with their redraws."""
    return not args.no_progress and sys.stderr.isatty()


def _add_density_options(p: argparse.ArgumentParser) -> None:
    from .density import ESTIMATORS
    p.add_argument("--density", choices=list(ESTIMATORS), default="histogram",
                   help="latent density estimator; histogram is the lab's per-dimension max")
    p.add_argument("--bins", type=_positive_int, default=10, help="histogram bins per latent dimension")
    p.add_argument("--alpha", type=_finite_float, default=0.001, help="histogram smoothing")
    p.add_argument("--reweight", choices=["both", "positive"], default="both",
                   help="reweight both classes (per-class densities) or only positives like the lab")
    p.add_argument("--strength", type=_finite_float, default=1.0,
                   help="sampling weight proportional to density**-strength; 0 is uniform")
    p.add_argument("--min-ess", type=_finite_float, default=0.25, dest="min_effective_fraction", metavar="SHARE",
                   help="lower the strength where needed so this share of each class stays effective "
                        "(Kish); 0 reproduces raw inverse-density weights")


def _add_stats_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n-boot", type=_positive_int, default=1000,
                   help="bootstrap resamples for the intervals of worst group, gap and ratio")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    p.add_argument("--min-group-size", type=_positive_int, default=30,
                   help="smaller groups are listed with a warning but not ranked for worst / gap / ratio")
    p.add_argument("--include-small", action="store_true", help="rank small groups too")


def _stats_options(args) -> dict:
    from .evaluation import check_options
    check_options(args.n_boot, args.min_group_size, args.seed)  # before any slow work
    return {"n_boot": args.n_boot, "min_group_size": args.min_group_size, "include_small": args.include_small,
            "seed": args.seed}


def _density_params(args) -> dict:
    return {"bins": args.bins, "alpha": args.alpha} if args.density.startswith("histogram") else {}


class _HelpFormatter(argparse.HelpFormatter):
    """Ends each option's help with its default, unless the help already states it in words.

    Options without a default (None) say "(default: ...)" in their own help; flags are off by default.
    """

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        # Identity, not ==: 0 == False, and a default of 0 is shown.
        if ("(default:" in text or not action.option_strings or default is None or default is False
                or default is argparse.SUPPRESS or default == []):
            return text
        return f"{text} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)  # sub-commands too: they are built with this class
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        # One line and exit code 2, as for every other bad input.
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


# An extension adds sub-commands to the parser and returns {command: handler(args)};
# the service (api.cli) plugs in this way, so the engine never imports it.
Extension = Callable[[argparse._SubParsersAction], dict[str, Callable]]


def build_parser(extensions: list[Extension] = (), handlers: dict | None = None) -> argparse.ArgumentParser:
    parser = _Parser(prog="debias", description="Audit image datasets for bias with a DB-VAE "
                                     "and retrain fairer models.")
    parser.add_argument("--version", action="version", version=f"debias {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("synth", help="write a synthetic biased face / non-face dataset (.npz)")
    p.add_argument("out", help="output .npz file")
    p.add_argument("--faces", type=_positive_int, default=2000, help="number of faces (label 1)")
    p.add_argument("--nonfaces", type=_positive_int, default=2000, help="number of non-faces (label 0)")
    p.add_argument("--image-size", type=_positive_int, default=64, help="side of the square images, in pixels")
    p.add_argument("--seed", type=int, default=0, help="random seed: the same seed draws the same images")
    p.add_argument("--prevalence", action="append", default=[], metavar="ATTR=VALUE:P,...",
                   help="share of each value of an attribute, e.g. skin_tone=light:0.5,medium:0.45,dark:0.05"
                        "; repeatable (default: 5%% dark skin, 5%% face-like objects among non-faces)")
    p.add_argument("--balanced", action="store_true", help="every attribute value equally common (test sets)")

    p = sub.add_parser("train", help="train a standard classifier or a DB-VAE with debiased sampling")
    p.add_argument("data", help=DATA_HELP)
    p.add_argument("--method", choices=["standard", "dbvae"], default="dbvae",
                   help="standard: a plain CNN classifier; dbvae: the classifier with a VAE and debiased sampling")
    p.add_argument("--out", required=True, help="model directory to write (refused if it exists, unless --resume)")
    p.add_argument("--epochs", type=_positive_int, default=6, help="passes over the training data")
    p.add_argument("--batch-size", type=_positive_int, default=32, help="samples per training step")
    p.add_argument("--lr", type=_finite_float, default=5e-4, help="Adam learning rate")
    p.add_argument("--lr-schedule", choices=["cosine", "constant"], default="cosine",
                   help="cosine: the rate decays from --lr over the epochs (default); constant: as the 6.S191 lab")
    seeds = p.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, default=0, help="seed of initialisation and sampling (reproducible runs)")
    seeds.add_argument("--seeds", metavar="S,S,...",
                       help="train one model per seed (a model set): --out gets seed-S/ per seed and "
                            "model_set.json; evaluate and compare take the set as one model (default: one model, "
                            "--seed)")
    p.add_argument("--latent-dim", type=_positive_int, default=100, help="size of the DB-VAE's latent space")
    p.add_argument("--kl-weight", type=_finite_float, default=0.0005,
                   help="weight of the KL divergence in the DB-VAE's loss")
    p.add_argument("--decoder", choices=("plain", "adversarial"), default="plain",  # models.DECODERS
                   help="adversarial: a second decoder, trained against a patch discriminator on the encoder's "
                        "codes (VAE-GAN), draws the audit's pictures and generated images sharp; the classifier, "
                        "the VAE and its latent space train exactly as with plain")
    p.add_argument("--adversarial-weight", type=_finite_float, default=0.05,
                   help="weight of the adversarial term in the picture decoder's loss (with --decoder adversarial)")
    p.add_argument("--error-upweight", type=_finite_float, default=None,
                   help="JTT's error set: after --error-epoch epochs, draw the samples the model gets wrong "
                        "this many times more often (within their class); 0 is off (default: dbvae 50, standard 0)")
    p.add_argument("--error-epoch", type=_positive_int, default=1,
                   help="epochs before the error set is taken (early, before rare samples are memorised)")
    p.add_argument("--error-steps", type=_non_negative_int, default=None,
                   help="take the error set after this many steps of --error-epoch when it is longer; 0: at its "
                        "end (default: 150)")
    p.add_argument("--error-schedule", choices=("constant", "geometric", "gated", "auto"),  # ERROR_SCHEDULES, auto
                   default=None,
                   help="constant: the error set drawn 1 + --error-upweight times as often in every later epoch; "
                        "geometric: (1 + upweight)^k times in the k-th, so the last epochs train almost only on it; "
                        "gated: geometric when the error set is a coherent subgroup of the latent space, else "
                        "constant (decided when it is taken, at no extra cost; error_set.json says why); "
                        "auto: train constant and geometric (about 1.8x the time) and keep the one with the better "
                        "held-out worst inferred group (needs --val-fraction > 0) (default: dbvae gated, standard "
                        "constant)")
    p.add_argument("--mix-groups", type=_finite_float, default=None,
                   help="share of each batch mixed with a same-class sample from the other side of the error "
                        "set (LISA over inferred groups; needs --error-upweight) (default: 0, off: it lost on the "
                        "benchmark)")
    p.add_argument("--val-fraction", type=_finite_float, default=0.1,  # holdout.VAL_FRACTION
                   help="share of each class held out of training and measured after every epoch (validation "
                        "accuracy and loss in the history); 0 to 0.5")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    p.add_argument("--nproc", type=_positive_int, default=1,
                   help="train one model in this many processes with DistributedDataParallel (gloo on the CPU, "
                        "NCCL with one GPU each); the same as torchrun --nproc-per-node N -m audit.cli train ... "
                        "(default: 1)")
    p.add_argument("--exclude-from", metavar="AUDIT_DIR/reviews.csv",
                   help="leave out of training the samples a reviews CSV (columns index,decision; the service's "
                        "GET /v1/audits/ID/reviews?format=csv) marks exclude; recorded in the model's config.json "
                        "(default: none, train on every sample)")
    p.add_argument("--device", help=DEVICE_HELP)
    _add_progress_option(p)
    _add_data_options(p)
    _add_density_options(p)

    p = sub.add_parser("audit", help="find under-represented latent features and anomalies")
    p.add_argument("data", help=DATA_HELP)
    p.add_argument("--model", required=True, help="DB-VAE model directory from `debias train`")
    p.add_argument("--out", required=True, help="audit directory to write (refused if it exists, unless --force)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--anomaly-threshold", type=_finite_float, default=3.5,
                   help="flag a sample at this robust z-score (median / MAD, per class) or above")
    p.add_argument("--anomaly-tail", type=_finite_float, default=0.02,
                   help="also flag each class's least typical share (0 to 0.5; 0: robust z only)")
    p.add_argument("--anomaly-on", choices=["both", "density", "reconstruction"], default="both",
                   help="flag samples of rare latent density, badly reconstructed ones, or both")
    p.add_argument("--top-features", type=_positive_int, default=5,
                   help="most under-represented latent features reported per class")
    p.add_argument("--max-subgroups", type=_positive_int, default=8,
                   help="most subgroups per class; how many are found is chosen from the data (BIC)")
    p.add_argument("--min-subgroup-size", type=_positive_int, default=10,
                   help="smaller subgroups are listed but flagged small and ranked last")
    p.add_argument("--no-figures", action="store_true", help="write report.json and samples.csv only (faster)")
    p.add_argument("--device", help=DEVICE_HELP)
    _add_progress_option(p)
    _add_data_options(p, None)
    _add_density_options(p)

    p = sub.add_parser("generate", help="new images decoded by a DB-VAE: from its prior, or from a discovered "
                                        "subgroup's latent region (labelled as generated)")
    p.add_argument("model", help="DB-VAE model directory from `debias train`")
    p.add_argument("--out", required=True, help="PNG grid to write")
    p.add_argument("--n", type=_positive_int, default=64, help="images to generate (at most 100)")
    p.add_argument("--subgroup", type=_non_negative_int,
                   help="a positive subgroup's id in --audit's report: decode from a Gaussian fitted to its "
                        "members' latent means (default: none, the prior)")
    p.add_argument("--audit", metavar="AUDIT_DIR", help="audit folder of --subgroup (from `debias audit` with "
                                                        "this model) (default: none)")
    p.add_argument("--seed", type=int, default=0, help="seed of the latent draws (the same seed, the same images)")
    p.add_argument("--device", help=DEVICE_HELP)

    p = sub.add_parser("counterfactual", help="would the model's answer change if only one attribute changed? "
                                              "A CycleGAN translates images between two of its values; "
                                              "flip rates with 95%% intervals")
    p.add_argument("model", help="model directory from `debias train`")
    p.add_argument("data", help=DATA_HELP + "; every image holding either value is translated and tested")
    p.add_argument("--attribute", required=True, help="the attribute to change, e.g. skin_tone")
    p.add_argument("--values", required=True, type=_value_pair, metavar="A:B",
                   help="the two values translated into each other, e.g. light:dark")
    p.add_argument("--out", required=True, help="folder for counterfactual.json, pairs.png and the translator")
    p.add_argument("--translator", metavar="DIR", help="reuse a translator (OUT/translator of an earlier run) "
                                                       "instead of training one (default: train on DATA)")
    p.add_argument("--epochs", type=_positive_int, default=8, help="epochs to train the translator")
    p.add_argument("--seed", type=_non_negative_int, default=0, help="seed of the translator and the probe")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--device", help=DEVICE_HELP)
    _add_progress_option(p)
    _add_data_options(p, None)

    p = sub.add_parser("evaluate", help="accuracy, FNR and FPR per group (label x attributes), with intervals")
    p.add_argument("model", help="model directory, or a model set from `debias train --seeds` (its members' "
                                 "predictions pooled, with mean +- sd across seeds)")
    p.add_argument("data", help=DATA_HELP)
    p.add_argument("--group-by", default="", help="comma-separated attribute names (default: none, groups are "
                                                  "the labels)")
    p.add_argument("--out", help="metrics JSON to write; its per-sample predictions go beside it "
                                 "(NAME.predictions.csv) for `debias compare` (default: print only)")
    p.add_argument("--device", help=DEVICE_HELP)
    _add_stats_options(p)
    _add_data_options(p, None)

    p = sub.add_parser("compare", help="two evaluations of one test set paired (McNemar, paired bootstrap); "
                                       "more than two side by side")
    p.add_argument("metrics", nargs="+", help="metrics JSON files from `debias evaluate --out`; with two, "
                                              "changes are the second minus the first")
    p.add_argument("--names", help="comma-separated column names (default: the files' stems)")
    p.add_argument("--out", help="paired comparison JSON to write, two evaluations only (default: print only)")
    _add_stats_options(p)

    p = sub.add_parser("demo", help="synth -> train standard and DB-VAE -> audit -> evaluate -> compare")
    p.add_argument("--out", default="demo-out", help="folder for its datasets, models, audit, metrics and "
                                                     "comparison.txt; trainings found there are resumed")
    p.add_argument("--seed", type=int, default=0, help="seed of the data and the first model of each method")
    p.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    p.add_argument("--n-seeds", type=_positive_int, default=None,
                   help="models per method, seeds --seed, --seed + 1, ...; more than one trains model sets and "
                        "reports mean +- sd across seeds (each seed adds the training time again) "
                        "(default: 2; --quick: 1)")
    _add_progress_option(p, "--quiet")

    p = sub.add_parser("pack", help="turn a folder of your own images into a .zip or .npz for debias and the service")
    p.add_argument("folder", help="a folder with one sub-folder per class (e.g. face/ and not_face/) or with "
                                  "manifest.csv (columns path,label; any other column is an attribute)")
    p.add_argument("--out", required=True, help="file to write: .zip keeps the original image files (the service "
                                                "resizes them on upload); .npz stores them decoded at --image-size")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    _add_data_options(p)
    for extend in extensions:
        (handlers if handlers is not None else {}).update(extend(sub))
    return parser


def _load_data(args, image_size: int):
    from .loaders import load_dataset
    return load_dataset(args.data, image_size=image_size, positive=args.positive, **_data_limits(args))


def _data_limits(args) -> dict:
    """load_dataset's bounds from --max-samples and --max-decoded-gib. The other limits on hostile input
    (max_expansion, pixels) keep their defaults, the same as the service's; a refusal is a DatasetError:
    exit 2, one line."""
    decoded_bytes = int(args.max_decoded_gib * 2 ** 30)
    # Raising the dataset's bounds raises a zip's with them: an entry per image (and its folders), and
    # original files no larger in all than the decoded array that is accepted.
    return dict(max_samples=args.max_samples, max_decoded_bytes=decoded_bytes,
                max_zip_entries=max(MAX_ZIP_ENTRIES, 2 * args.max_samples),
                max_zip_bytes=max(MAX_ZIP_BYTES, decoded_bytes))


def _model_image_size(model_dir: str) -> int:
    from .checkpoint import load_model
    from .modelset import is_model_set, members
    if is_model_set(model_dir):  # the members share one architecture: the first one's
        model_dir = members(model_dir)[0][1]
    model, _ = load_model(model_dir)
    return model.cfg.image_size


def cmd_synth(args) -> None:
    from .synth import make_synthetic, parse_prevalence, save_npz
    prevalence = dict(parse_prevalence(spec) for spec in args.prevalence)
    if not args.out.endswith(".npz"):
        raise DebiasError(f"output must be a .npz file, got {args.out!r}")
    ds = make_synthetic(args.faces, args.nonfaces, args.image_size, args.seed, prevalence, args.balanced)
    save_npz(ds, args.out)
    print(f"wrote {args.out}: {plural(len(ds), 'image')} ({plural(args.faces, 'face')}, "
          f"{plural(args.nonfaces, 'non-face')}), "
          f"{args.image_size}px, attributes: {', '.join(ds.attributes.columns)}")


def _require_inputs(data: str | None = None, model: str | None = None) -> None:
    """The loaders' own one-line refusals of a missing DATA or MODEL_DIR, before a command imports torch
    (seconds): a typo is answered at once. MODEL_DIR only where it would be read before DATA (no --image-size):
    the order of the refusals stays the command's."""
    from .errors import DatasetError, ModelError
    if data is not None and not Path(data).exists():
        raise DatasetError(f"no such file or folder: {data}")
    if model is not None and not Path(model).is_dir():
        raise ModelError(f"no such model directory: {model}")


def _launch_ranks(args, model_cfg, train_cfg, seeds, choose: bool) -> None:
    """`debias train --nproc N`: what N processes cannot do is refused here, once; then N ranks train."""
    from . import distributed
    from .pipeline import check_new_model_dir
    from .training import check_distributable
    if "WORLD_SIZE" in os.environ:
        raise DebiasError("--nproc inside a torchrun rank: give torchrun the process count, not both")
    if seeds is not None:
        raise DebiasError("--seeds trains a model set one model at a time; drop --nproc or train each seed alone")
    check_distributable(model_cfg, train_cfg, args.nproc, choose)
    check_new_model_dir(args.out, args.resume)
    argv = list(sys.argv[1:]) if args.argv is None else list(args.argv)
    code = distributed.launch(_without_nproc(argv), args.nproc)
    if code:
        raise SystemExit(code)


def _without_nproc(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def cmd_train(args) -> None:
    _require_inputs(data=args.data)
    from .models import ModelConfig
    from .modelset import parse_seeds, train_set
    from .pipeline import train_model
    from .training import TrainConfig, default_error_options
    seeds = None if args.seeds is None else parse_seeds(args.seeds)  # before any slow work
    model_cfg = ModelConfig(method=args.method, image_size=args.image_size, latent_dim=args.latent_dim,
                            kl_weight=args.kl_weight, decoder=args.decoder,
                            adversarial_weight=args.adversarial_weight)
    train_cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                            lr_schedule=args.lr_schedule, seed=args.seed,
                            density=args.density, density_params=_density_params(args),
                            reweight=args.reweight, strength=args.strength,
                            min_effective_fraction=args.min_effective_fraction,
                            error_epoch=args.error_epoch, val_fraction=args.val_fraction, device=args.device,
                            **({} if args.error_steps is None else {"error_steps": args.error_steps}),
                            **default_error_options(args.method, args.epochs, args.error_upweight, args.mix_groups,
                                                    args.error_epoch,
                                                    None if args.error_schedule == "auto" else args.error_schedule))
    choose = args.error_schedule == "auto"
    if choose:
        from .schedule_choice import check_choosable
        check_choosable(train_cfg)  # before any slow work
    if args.nproc > 1:
        _launch_ranks(args, model_cfg, train_cfg, seeds, choose)
        return
    ds = _load_data(args, args.image_size)
    exclude = _exclusion(args.exclude_from, ds) if args.exclude_from else None
    if seeds is not None:
        results = train_set(ds, args.out, model_cfg, train_cfg, seeds, resume=args.resume,
                            progress=_progress(args), log=None if args.no_progress else print, exclude=exclude,
                            choose_schedule=choose)
        accuracy = [r.history[-1]["accuracy"] for r in results.values() if r.history]
        print(f"trained {args.method} for {plural(args.epochs, 'epoch')} with {plural(len(seeds), 'seed')} "
              f"({', '.join(map(str, seeds))}) -> model set {args.out} (last epoch accuracy "
              f"{', '.join(f'{a:.3f}' for a in accuracy)})")
        return
    result = train_model(ds, args.out, model_cfg, train_cfg, resume=args.resume, progress=_progress(args),
                         exclude=exclude, choose_schedule=choose)
    from .distributed import rank_from_env
    if rank_from_env() != 0:
        return  # rank 0 speaks for a multi-process run
    last = result.history[-1] if result.history else {}
    held_out = f", held-out accuracy {last['val_accuracy']:.3f}" if "val_accuracy" in last else ""
    print(f"trained {args.method} for {plural(len(result.history), 'epoch')} -> {args.out} "
          f"(last epoch: loss {last.get('loss', float('nan')):.4f}, accuracy {last.get('accuracy', float('nan')):.3f}"
          f"{held_out})")
    if choose:
        from .schedule_choice import describe_choice
        print(describe_choice(args.out))


def _exclusion(path: str, ds):
    """The samples a reviews CSV marks exclude, checked against the training data (before any slow work)."""
    from .reviews import check_audit_folder, read_reviews_csv
    check_audit_folder(path, ds.labels)
    exclude = read_reviews_csv(path, ds.labels)
    exclude.check_fits(ds)
    print(f"leaving out {exclude.indices.size} of {len(ds)} samples marked exclude in {path}")
    return exclude


def cmd_audit(args) -> None:
    from .modelset import is_model_set, members
    from .pipeline import audit_dataset
    from .report import AuditConfig, check_class_sizes
    _refuse_existing_folder(args.out, args.force)  # before any slow work
    if is_model_set(args.model):  # one latent space per audit: a member's
        raise DebiasError(f"{args.model} is a model set (one model per seed); audit one of its members, "
                          f"e.g. --model {members(args.model)[0][1]}")
    cfg = AuditConfig(density=args.density, density_params=_density_params(args), reweight=args.reweight,
                      strength=args.strength, min_effective_fraction=args.min_effective_fraction,
                      anomaly_on=args.anomaly_on, anomaly_threshold=args.anomaly_threshold,
                      anomaly_tail=args.anomaly_tail,
                      top_features=args.top_features, max_subgroups=args.max_subgroups,
                      min_subgroup_size=args.min_subgroup_size)
    ds = _load_data(args, args.image_size or _model_image_size(args.model))
    counts = ds.class_counts()
    check_class_sizes({"positive": counts[1], "negative": counts[0]}, cfg.min_subgroup_size)  # before the forward pass
    result = audit_dataset(ds, args.model, args.out, cfg, device=args.device, with_figures=not args.no_figures,
                           progress=_progress(args))
    print(summarise_audit(result.report, args.out))


def _refuse_existing_folder(out: str, force: bool) -> None:
    """As `train` does: an earlier result is replaced only when asked (the engine replaces it whole, on success)."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise DebiasError(f"--out {out} is a file, not a folder; choose a new --out")
    if not force and path.is_dir() and any(path.iterdir()):
        raise DebiasError(f"{out} already exists and is not empty; pass --force to replace it or choose a new --out")


def _subgroup_line(sg: dict) -> str:
    error = "n/a" if sg.get("error_rate") is None else f"{sg['error_rate']:.1%}"
    top = sg["enriched"][0] if sg.get("enriched") else None
    enriched = (f"{top['attribute']}={top['value']} (precision {top['precision']:.2f}, recall {top['recall']:.2f}, "
                f"lift {top['lift']:.1f})"
                if top else "no enriched attribute")
    small = ", small" if sg.get("small") else ""
    stratum = sg.get("stratum")
    small += f", {stratum}" if stratum and stratum != "the rest" else ""
    return (f"  subgroup {sg['id']} ({sg['class']}{small}): {plural(sg['n'], 'sample')}, "
            f"{sg['share']:.1%} of the class, error rate {error}, {enriched}")


def _feature_line(f: dict) -> str:
    tracks = (f"tracks {f['attribute']}={f['attribute_value']} (eta^2 {f['eta_squared']:.2f})" if f.get("attribute")
              else "no supplied attribute tracks it")
    change = f.get("traversal_change")
    strip = "" if change is None else f", traversal change {change:.3f}"
    line = (f"  feature {f['feature']} ({f['class']}, subgroup {f['subgroup']}): separation {f['score']:.2f} sd, "
            f"rare range holds {f['share_in_rare_range']:.1%} of the class, {tracks}{strip}")
    return line + (f"\n    note: {f['traversal_note']}" if f.get("traversal_note") else "")


def _ci_text(ci) -> str:
    return f" [{ci[0]:.1%}, {ci[1]:.1%}]" if ci else ""


def verdict_lines(verdict: dict) -> list[str]:
    """The verdict first (audit.verdict): the under-represented subgroups, attribute values and the anomaly rule."""
    lines = [f"verdict: {verdict['headline']}"]
    if verdict["subgroups"]:
        lines.append("  under-represented subgroups (drawn more often than their class's average), worst first:")
    for s in verdict["subgroups"]:
        error = "n/a" if s["error_rate"] is None else f"{s['error_rate']:.1%}{_ci_text(s['error_rate_ci'])}"
        held = "; ".join(f"{e['attribute']}={e['value']} holds {e['precision']:.0%}{_ci_text(e['precision_ci'])} of it "
                         f"(recall {e['recall']:.0%}{_ci_text(e['recall_ci'])})" for e in s["enriched"])
        lines.append(f"    subgroup {s['id']} ({s['class']}): {plural(s['n'], 'sample')}, {s['share']:.1%}"
                     f"{_ci_text(s['share_ci'])} of the class, drawn {s['mean_weight_ratio']:.1f}x as often as "
                     f"average, error rate {error}" + (f"; {held}" if held else "; no enriched attribute"))
    if verdict["attributes"]:
        lines.append("  attribute values, most under-represented first:")
    for a in verdict["attributes"][:6]:
        lines.append(f"    {a['class']} {a['attribute']}={a['value']}: {plural(a['count'], 'sample')}, "
                     f"{a['share']:.1%}{_ci_text(a['share_ci'])} of the class, drawn {a['mean_weight_ratio']:.2f}x "
                     f"as often as average")
    lines.append(f"  {verdict['anomalies']['sentence']}")
    return lines


def summarise_audit(report: dict, out_dir, top_subgroups: int = 5) -> str:
    from .verdict import build_verdict
    an = report["anomalies"]
    subgroups = report.get("subgroups", [])
    lines = [f"audited {plural(report['summary']['n_samples'], 'sample')} -> {out_dir}"]
    lines += verdict_lines(report.get("verdict") or build_verdict(report))
    lines.append("details:")
    if subgroups:
        lines.append(f"  {plural(len(subgroups), 'subgroup')} found; the most under-represented and worst served "
                     f"first:")
        lines += [_subgroup_line(sg) for sg in subgroups[:top_subgroups]]
    features = report["under_represented_features"]
    if features:
        lines.append("  features that set the top subgroups apart (latent directions):")
        lines += [_feature_line(f) for f in features[:top_subgroups]]
    cutoffs = ", ".join(f"{cls} {cut:.2f}" for cls, cut in (an.get("cutoffs") or {}).items())
    if cutoffs:  # the attribute values and the anomaly count are in the verdict above
        lines.append(f"  anomaly scores from which samples were flagged: {cutoffs}")
    return "\n".join(lines)


def cmd_evaluate(args) -> None:
    _require_inputs(data=args.data, model=None if args.image_size else args.model)
    from .evaluation import format_table, with_options, write_evaluation
    from .modelset import evaluate_set, is_model_set
    from .pipeline import evaluate_model
    options = _stats_options(args)
    group_by = [g.strip() for g in args.group_by.split(",") if g.strip()]
    ds = _load_data(args, args.image_size or _model_image_size(args.model))
    if is_model_set(args.model):
        metrics = evaluate_set(args.model, ds, group_by, args.device, **options)
    else:
        # evaluate_model summarises with the default options; summarising again from its predictions is cheap
        # (the bootstrap costs groups x resamples, not samples).
        metrics = with_options(evaluate_model(args.model, ds, group_by, args.device), **options)
    for note in metrics["warnings"]:
        print(f"debias: warning: {note}", file=sys.stderr)
    print(format_table(metrics))
    if args.out:
        predictions = write_evaluation(Path(args.out), metrics)
        print(f"wrote {args.out} and its per-sample predictions {predictions}")


def cmd_compare(args) -> None:
    from .checkpoint import write_json
    from .comparison import check_same_dataset, format_paired, load_evaluation, load_predictions, paired_comparison
    from .evaluation import format_comparison
    names = args.names.split(",") if args.names else [Path(m).stem for m in args.metrics]
    if len(names) != len(args.metrics):
        raise DebiasError(f"--names has {len(names)} names for {len(args.metrics)} metrics files")
    if len(set(names)) != len(names):
        raise DebiasError(f"column names must differ, got {', '.join(names)}; pass --names")
    options = _stats_options(args)
    loaded = [load_evaluation(path, with_predictions=False) for path in args.metrics]
    for path, metrics in zip(args.metrics[1:], loaded[1:]):
        check_same_dataset(loaded[0], metrics, (args.metrics[0], path))
    if len(loaded) != 2:
        if args.out:
            raise DebiasError(f"--out writes a paired comparison of two evaluations, got {len(loaded)}")
        print(format_comparison(dict(zip(names, loaded))))
        return
    for path, metrics in zip(args.metrics, loaded):
        metrics["predictions"] = load_predictions(path, metrics)
    result = paired_comparison(loaded[0], loaded[1], (names[0], names[1]), **options)
    for note in result["warnings"]:
        print(f"debias: warning: {note}", file=sys.stderr)
    print(format_paired(result))
    if args.out:
        write_json(Path(args.out), result)


def cmd_generate(args) -> None:
    from .pipeline import generate_grid
    path = generate_grid(args.model, args.out, n=args.n, seed=args.seed, subgroup=args.subgroup,
                         audit_dir=args.audit, device=args.device)
    where = f"subgroup {args.subgroup}'s latent region" if args.subgroup is not None else "the prior"
    print(f"wrote {path}: {plural(args.n, 'generated image')} decoded from {where}")


def cmd_counterfactual(args) -> None:
    _require_inputs(data=args.data, model=None if args.image_size else args.model)
    from .counterfactual import format_summary, run_counterfactual
    from .modelset import is_model_set, members
    _refuse_existing_folder(args.out, args.force)  # before any slow work
    if is_model_set(args.model):
        raise DebiasError(f"{args.model} is a model set (one model per seed); test its members one by one with "
                          f"one translator, e.g. {members(args.model)[0][1]} first, then the others with "
                          f"--translator OUT/translator")
    ds = _load_data(args, args.image_size or _model_image_size(args.model))
    bar = _StepBar() if _progress(args) else None
    try:
        result = run_counterfactual(args.model, ds, args.attribute, args.values, args.out,
                                    translator_dir=args.translator, epochs=args.epochs, seed=args.seed,
                                    device=args.device, callback=bar)
    finally:
        if bar is not None:
            bar.close()
    for note in result["warnings"]:
        print(f"debias: warning: {note}", file=sys.stderr)
    print(format_summary(result))
    trained = f" and the translator {Path(args.out) / 'translator'}" if result["translator"]["trained"] else ""
    print(f"wrote {Path(args.out) / 'counterfactual.json'}, {Path(args.out) / 'pairs.png'}{trained}")


class _StepBar:
    """A progress bar fed callback(fraction, message) by a long engine step."""

    def __init__(self):
        from tqdm.auto import tqdm
        self.bar = tqdm(total=100, leave=False, bar_format="{desc} {percentage:3.0f}%|{bar}|")

    def __call__(self, fraction: float, message: str) -> None:
        self.bar.set_description_str(message, refresh=False)
        self.bar.update(round(100 * fraction) - self.bar.n)

    def close(self) -> None:
        self.bar.close()


def cmd_demo(args) -> None:
    from .demo import run_demo
    run_demo(Path(args.out), seed=args.seed, quick=args.quick, n_seeds=args.n_seeds, progress=_progress(args))


def cmd_pack(args) -> None:
    from .pack import pack_folder
    ds = pack_folder(args.folder, args.out, image_size=args.image_size, positive=args.positive, force=args.force,
                     **_data_limits(args))
    counts = ds.class_counts()
    attributes = ", ".join(map(str, ds.attributes.columns)) or "none"
    how = f"images at {ds.image_size}px" if args.out.lower().endswith(".npz") else "the original image files"
    hint = f"; read it with --positive {args.positive} (on upload: positive={args.positive})" if (
        args.positive and args.out.lower().endswith(".zip")) else ""
    print(f"wrote {args.out}: {plural(len(ds), 'image')} ({counts[1]} positive, {counts[0]} negative), {how}, "
          f"attributes: {attributes}{hint}")


COMMANDS = {"synth": cmd_synth, "train": cmd_train, "audit": cmd_audit, "evaluate": cmd_evaluate,
            "compare": cmd_compare, "demo": cmd_demo, "pack": cmd_pack, "generate": cmd_generate,
            "counterfactual": cmd_counterfactual}


def main(argv: list[str] | None = None, extensions: list[Extension] = ()) -> int:
    handlers = dict(COMMANDS)
    args = build_parser(extensions, handlers).parse_args(argv)
    args.argv = None if argv is None else [str(a) for a in argv]   # what a launcher passes on to its ranks
    warnings.formatwarning = lambda msg, cat, *a, **k: f"debias: warning: {msg}\n"
    try:
        handlers[args.command](args)
    except DebiasError as exc:
        if os.environ.get("RANK", "0") == "0":   # one line for a multi-process run too: rank 0's
            print(f"debias: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("debias: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
