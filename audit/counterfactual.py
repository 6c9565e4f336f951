"""Counterfactual test: would the model's answer change if only one attribute changed?

A CycleGAN (audit.cyclegan) translates every image holding value A of an attribute to value B and every B
image to A; the classifier judges each original and its translation. Per direction and per class the result
gives the share of decisions that flip (Wilson 95% interval) and the mean change in the predicted probability
of the positive class (Student's t 95% interval).

A flip rate means something only if the translation did what it claims. Two checks, measured on every run:
  - an attribute probe (logistic regression on 8x8 downscaled pixels) fitted on the real images of A and B;
    it must tell them apart on held-out real images and assign at least 80% of the translations to their
    target value;
  - the cycle error: the mean L1 distance (pixel scale 0-1) between an image and its translation translated
    back; at most half the typical distance between two images of the source value.
A direction that fails either check is labelled unreliable and warned about.

OUT/
  counterfactual.json   the result (contract in ARCHITECTURE.md)
  pairs.png             originals over their translations, the largest probability changes first
  translator/           the CycleGAN, when this run trained it (reuse it with --translator)
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .checkpoint import load_model, write_json
from .cyclegan import Translator, TranslatorConfig, load_translator, train_translator
from .dataset import ImageDataset
from .errors import DebiasError
from .figures import counterfactual_pairs
from .inference import predict
from .models import check_image_size, pick_device
from .outputs import staged_directory
from .sampling import CLASS_NAMES
from .stats import CONFIDENCE, as_interval, as_number, mean_interval, wilson_interval

MIN_IMAGES_PER_VALUE = 10     # fewer cannot train a translator or fit and check a probe
MIN_PROBE_SHARE = 0.8         # translations the probe must assign to their target value
MAX_CYCLE_RATIO = 0.5         # round-trip error, as a share of the distance between two images of the value
MAX_DISTANCE_PAIRS = 1000     # image pairs that measure that distance
PROBE_SIDE = 8
PROBE_HELD_OUT = 0.25
PAIRS_PER_DIRECTION = 6
THRESHOLD = 0.5
DIRECTIONS = ("a_to_b", "b_to_a")


def value_indices(dataset: ImageDataset, attribute: str, values: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the images holding A and of those holding B; a DebiasError naming what is missing."""
    if attribute not in dataset.attributes.columns:
        known = ", ".join(map(str, dataset.attributes.columns)) or "none"
        raise DebiasError(f"the dataset has no attribute {attribute!r}; its attributes: {known}")
    column = dataset.attributes[attribute].astype(str).to_numpy()
    found = [np.flatnonzero(column == v) for v in values]
    for value, idx in zip(values, found):
        if len(idx) < MIN_IMAGES_PER_VALUE:
            counts = ", ".join(f"{v}: {n}" for v, n in zip(*np.unique(column, return_counts=True)))
            raise DebiasError(f"attribute {attribute!r} has {len(idx)} images of value {value!r}; a counterfactual "
                              f"test needs at least {MIN_IMAGES_PER_VALUE} of each value (it has {counts})")
    return found[0], found[1]


def check_translator(translator: Translator, attribute: str, values: tuple[str, str], image_size: int) -> bool:
    """Whether the translator's A and B are swapped relative to `values`; a DebiasError if it does not fit."""
    cfg = translator.cfg
    if cfg.attribute != attribute or set(cfg.values) != set(values):
        raise DebiasError(f"the translator translates {cfg.attribute} {cfg.values[0]}<->{cfg.values[1]}, not "
                          f"{attribute} {values[0]}<->{values[1]}; train one with these values (omit --translator)")
    if cfg.image_size != image_size:
        raise DebiasError(f"the translator works on {cfg.image_size}px images but the model on {image_size}px; "
                          f"train a translator at {image_size}px (omit --translator)")
    return tuple(cfg.values) != tuple(values)


def run_counterfactual(model_dir: str | Path, dataset: ImageDataset, attribute: str, values: tuple[str, str],
                       out_dir: str | Path, translator_dir: str | Path | None = None, epochs: int = 8,
                       seed: int = 0, device: str | None = None,
                       callback: Callable[[float, str], None] | None = None) -> dict:
    """Write OUT (see the module doc) whole or not at all; returns the counterfactual.json contents.

    callback(fraction done 0-1, message) as the translator trains and as the test runs.
    """
    dev = pick_device(device)
    model, _ = load_model(model_dir, dev)
    check_image_size(model.cfg.image_size, dataset.image_size)
    idx = value_indices(dataset, attribute, values)
    report = callback or (lambda fraction, message: None)
    with staged_directory(out_dir) as stage:
        started = time.perf_counter()
        if translator_dir is not None:
            translator = load_translator(translator_dir, dev)
            source = {"trained": False, "path": str(translator_dir)}
        else:
            cfg = TranslatorConfig(attribute=attribute, values=values, image_size=dataset.image_size,
                                   epochs=epochs, seed=seed)

            def on_step(epoch: int, step: int, steps: int, losses: dict) -> None:
                report(0.9 * (epoch - 1 + step / steps) / cfg.epochs,
                       f"training the translator: epoch {epoch}/{cfg.epochs}, step {step}/{steps}, "
                       f"cycle loss {losses['cycle']:.3f}")

            translator = train_translator(dataset.images[idx[0]], dataset.images[idx[1]], cfg, dev, on_step)
            translator.save(stage / "translator")
            source = {"trained": True, "path": "translator"}
        source["seconds"] = round(time.perf_counter() - started, 2)
        report(0.9, "translating and classifying")
        result = measure_flips(model, translator, dataset, attribute, values, stage, seed, dev)
        result["model"]["path"] = str(model_dir)
        result["translator"] = {**source, **result["translator"]}
        write_json(stage / "counterfactual.json", result)
    report(1.0, "done")
    return result


def measure_flips(model, translator, dataset: ImageDataset, attribute: str, values: tuple[str, str],
                  folder: Path, seed: int = 0, device=None) -> dict:
    """Translate, classify and check (the module doc); writes pairs.png into `folder` and returns the result.

    translator: anything with .cfg (a TranslatorConfig) and .translate(images, "a_to_b" | "b_to_a").
    """
    device = device or torch.device("cpu")
    swapped = check_translator(translator, attribute, values, dataset.image_size)
    idx = value_indices(dataset, attribute, values)
    probe, probe_check = fit_probe(dataset.images[idx[0]], dataset.images[idx[1]], seed)
    directions, pairs = [], []
    for d, (source_idx, target) in enumerate(((idx[0], 1), (idx[1], 0))):
        direction = DIRECTIONS[1 - d] if swapped else DIRECTIONS[d]
        tested, pair = _test_direction(model, translator, direction, probe, dataset, source_idx, values[d],
                                       values[1 - d], target, device)
        directions.append(tested)
        pairs.append(pair)
    result = {"attribute": attribute, "values": list(values), "image_size": dataset.image_size,
              "threshold": THRESHOLD, "confidence": CONFIDENCE, "model": {"method": model.cfg.method},
              "translator": {"epochs": translator.cfg.epochs, "history": translator.cfg.history},
              "probe": probe_check, "directions": directions,
              "translate_seconds": round(sum(d.pop("_seconds") for d in directions), 3)}
    result["warnings"] = quality_warnings(result)
    result["reliable"] = not result["warnings"]
    if probe_check["held_out_accuracy"] < MIN_PROBE_SHARE:  # nothing checked the translations
        for d in directions:
            d["reliable"] = False
    counterfactual_pairs(pairs, Path(folder) / "pairs.png",
                         title=f"{attribute}: {values[0]} \u2194 {values[1]}, translated by a CycleGAN",
                         notes=["top: original; below: translated, with p(positive) before \u2192 after"])
    result["pairs_png"] = "pairs.png"
    return result


def _test_direction(model, translator: Translator, direction: str, probe, dataset: ImageDataset,
                    source_idx: np.ndarray, source_value: str, target_value: str, probe_target: int, device):
    images = dataset.images[np.sort(source_idx)]
    labels = dataset.labels[np.sort(source_idx)]
    started = time.perf_counter()
    translated = translator.translate(images, direction)
    seconds = time.perf_counter() - started
    back = translator.translate(translated, "b_to_a" if direction == "a_to_b" else "a_to_b")
    p_before, p_after = (_probability(model, x, device) for x in (images, translated))
    cells = [_cell("all", labels, p_before, p_after, np.ones(len(labels), bool))]
    cells += [_cell(CLASS_NAMES[c], labels, p_before, p_after, labels == c) for c in (1, 0) if (labels == c).any()]
    change = np.abs(p_after - p_before)
    top = np.argsort(-change, kind="stable")[:PAIRS_PER_DIRECTION]
    captions = [f"p {p_before[i]:.2f}\u2192{p_after[i]:.2f}" for i in top]
    translation = translation_check(images, translated, back, probe, probe_target, source_value, target_value)
    result = {"direction": f"{source_value}->{target_value}", "from": source_value, "to": target_value,
              "n": len(images), "classes": cells, "reliable": translation["warning"] is None,
              "translation": translation, "_seconds": seconds}
    return result, (f"{source_value} \u2192 {target_value}", images[top], translated[top], captions)


def translation_check(images: np.ndarray, translated: np.ndarray, back: np.ndarray, probe, probe_target: int,
                      source_value: str, target_value: str) -> dict:
    """Did the translation change the attribute (the probe) and keep the rest (the cycle)? A warning if not.

    The cycle error is judged against the typical distance between two images of the source value: a round
    trip that lands half as far from the original as another image is has lost what the image showed.
    """
    on_target = int((probe.predict(probe_features(translated)) == probe_target).sum())
    share = on_target / len(images)
    cycle_error = _mean_l1(back, images)
    order = np.random.default_rng(0).permutation(len(images))[:MAX_DISTANCE_PAIRS]
    typical = _mean_l1(images[order], images[np.roll(order, 1)]) if len(order) > 1 else float("nan")
    ratio = cycle_error / typical if typical > 0 else float("nan")
    notes = []
    if share < MIN_PROBE_SHARE:
        notes.append(f"the probe assigns only {share:.0%} of the translations to {target_value} (at least "
                     f"{MIN_PROBE_SHARE:.0%} needed)")
    if ratio > MAX_CYCLE_RATIO:
        notes.append(f"translating back lands {ratio:.0%} as far from the original as another image of "
                     f"{source_value} is (at most {MAX_CYCLE_RATIO:.0%} allowed): the translation loses what the "
                     f"image shows")
    warning = None if not notes else (f"{source_value} \u2192 {target_value}: {'; '.join(notes)}; the translator "
                                      f"failed in this direction, its flip rates are unreliable (train it longer: "
                                      f"--epochs)")
    return {"probe_target_share": share, "probe_target_share_ci": as_interval(*wilson_interval(on_target,
                                                                                                len(images))),
            "cycle_error": round(cycle_error, 5), "typical_distance": as_number(round(typical, 5)),
            "cycle_error_ratio": as_number(round(ratio, 4)), "warning": warning}


def _mean_l1(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute pixel difference on the 0-1 scale, a batch at a time (no float copy of a whole set)."""
    total = 0.0
    for start in range(0, len(a), 256):
        total += float(np.abs(a[start:start + 256].astype(np.float32) - b[start:start + 256]).sum())
    return total / (a.size * 255.0)


def _probability(model, images: np.ndarray, device) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-predict(model, images, device, want_recon_error=False)["logit"].astype(np.float64)))


def _cell(name: str, labels: np.ndarray, p_before: np.ndarray, p_after: np.ndarray, mask: np.ndarray) -> dict:
    before, after = p_before[mask] >= THRESHOLD, p_after[mask] >= THRESHOLD
    n, flipped = int(mask.sum()), int((before != after).sum())
    right_before, right_after = (int((d == (labels[mask] == 1)).sum()) for d in (before, after))
    change = p_after[mask] - p_before[mask]
    cell = {"class": name, "n": n, "flipped": flipped, "flip_rate": flipped / n,
            "flip_rate_ci": as_interval(*wilson_interval(flipped, n)),
            "mean_probability_change": as_number(change.mean()),
            "mean_probability_change_ci": as_interval(*mean_interval(change)),
            "accuracy_original": right_before / n,
            "accuracy_original_ci": as_interval(*wilson_interval(right_before, n)),
            "accuracy_translated": right_after / n,
            "accuracy_translated_ci": as_interval(*wilson_interval(right_after, n))}
    return cell


def probe_features(images: np.ndarray) -> np.ndarray:
    """(N,H,W,3) uint8 -> (N, 8*8*3) block means in [0,1]: colour and coarse layout, no fine detail."""
    n, h, w, c = images.shape
    if h % PROBE_SIDE or w % PROBE_SIDE:
        raise DebiasError(f"the attribute probe needs images whose side is a multiple of {PROBE_SIDE}, got {h}x{w}")
    blocks = images.reshape(n, PROBE_SIDE, h // PROBE_SIDE, PROBE_SIDE, w // PROBE_SIDE, c)
    return blocks.mean(axis=(2, 4), dtype=np.float32).reshape(n, -1) / 255.0


def fit_probe(images_a: np.ndarray, images_b: np.ndarray, seed: int = 0):
    """A logistic regression telling B (1) from A (0), fitted on 75% of each value's real images; returns it and
    its accuracy on the held-out real images (balanced over A and B)."""
    from sklearn.linear_model import LogisticRegression
    rng = np.random.default_rng(seed)
    fit_rows, held_rows, held_labels = [], [], []
    features = [probe_features(x) for x in (images_a, images_b)]
    for label, x in enumerate(features):
        order = rng.permutation(len(x))
        n_held = max(1, round(PROBE_HELD_OUT * len(x)))
        held_rows.append(x[order[:n_held]])
        held_labels.append(np.full(n_held, label))
        fit_rows.append((x[order[n_held:]], np.full(len(x) - n_held, label)))
    probe = LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced")
    probe.fit(np.concatenate([x for x, _ in fit_rows]), np.concatenate([y for _, y in fit_rows]))
    right = [int((probe.predict(x) == y).sum()) for x, y in zip(held_rows, held_labels)]
    recall = [r / len(y) for r, y in zip(right, held_labels)]
    check = {"kind": f"logistic regression on {PROBE_SIDE}x{PROBE_SIDE} downscaled pixels",
             "n_held_out": int(sum(len(y) for y in held_labels)),
             "held_out_accuracy": float(np.mean(recall)),
             "held_out_accuracy_ci": as_interval(*wilson_interval(sum(right), sum(len(y) for y in held_labels)))}
    return probe, check


def quality_warnings(result: dict) -> list[str]:
    attribute = result["attribute"]
    notes = []
    if result["probe"]["held_out_accuracy"] < MIN_PROBE_SHARE:
        notes.append(f"the attribute probe tells {attribute} {result['values'][0]} from {result['values'][1]} on "
                     f"only {result['probe']['held_out_accuracy']:.0%} of held-out real images, so it cannot "
                     f"check the translations: every flip rate here is unreliable")
    return notes + [d["translation"]["warning"] for d in result["directions"] if d["translation"]["warning"]]


def format_summary(result: dict) -> str:
    """The CLI's lines: per direction and class, the flip rate and mean change with their intervals."""
    lines = [f"counterfactual test of {result['attribute']} {result['values'][0]} \u2194 {result['values'][1]} "
             f"({result['model']['method']} model, 95% intervals):"]
    for d in result["directions"]:
        tag = "" if d["reliable"] and not result["warnings"] else "  [unreliable]"
        lines.append(f"  {d['from']} \u2192 {d['to']}: {d['n']} images, probe puts "
                     f"{d['translation']['probe_target_share']:.0%} on {d['to']}, cycle error (L1) "
                     f"{d['translation']['cycle_error']:.3f}{tag}")
        for c in d["classes"]:
            lo, hi = c["flip_rate_ci"]
            m_ci = c["mean_probability_change_ci"]
            change = (f"{c['mean_probability_change']:+.3f} [{m_ci[0]:+.3f}, {m_ci[1]:+.3f}]" if m_ci
                      else f"{c['mean_probability_change']:+.3f}")
            lines.append(f"    {c['class']:<9} n={c['n']:<6} flipped {c['flip_rate']:.1%} [{lo:.1%}, {hi:.1%}]  "
                         f"mean change in p(positive) {change}  accuracy {c['accuracy_original']:.3f} "
                         f"-> {c['accuracy_translated']:.3f}")
    return "\n".join(lines)
