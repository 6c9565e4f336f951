"""Counterfactual tests: the flip accounting on hand-made cases, the translation checks, the translator's
folder, and `debias counterfactual` end to end on tiny data."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from audit.checkpoint import write_json
from audit.cli import main
from audit.counterfactual import _cell, measure_flips, probe_features, quality_warnings, value_indices
from audit.cyclegan import TranslatorConfig, load_translator, train_translator
from audit.dataset import ImageDataset
from audit.errors import DebiasError, ModelError
from audit.modelset import MANIFEST
from audit.stats import wilson_interval
from audit.synth import make_synthetic, save_npz


class RedMeansPositive(nn.Module):
    """A classifier that looks only at colour: positive when the image is more red than green."""

    class cfg:
        method = "standard"

    def forward(self, x):
        return {"logit": 50 * (x[:, 0].mean((1, 2)) - x[:, 1].mean((1, 2)))}


class FakeTranslator:
    """swap: red and green channels exchanged (a perfect colour translation); otherwise the image unchanged."""

    def __init__(self, swap: bool, values=("red", "green")):
        self.swap = swap
        self.cfg = TranslatorConfig(attribute="color", values=values, image_size=16, epochs=1)

    def translate(self, images, direction):
        return images[..., [1, 0, 2]] if self.swap else images.copy()


def coloured(labels_red, labels_green) -> ImageDataset:
    """Squares of red (then green) on black, with the given labels."""
    rng = np.random.default_rng(0)
    labels = np.r_[labels_red, labels_green]
    images = np.zeros((len(labels), 16, 16, 3), np.uint8)
    for i in range(len(labels)):
        r, c = rng.integers(0, 8, 2)
        images[i, r:r + 8, c:c + 8, 0 if i < len(labels_red) else 1] = rng.integers(150, 255)
    colour = ["red"] * len(labels_red) + ["green"] * len(labels_green)
    return ImageDataset(images=images, labels=labels.astype(np.int64), attributes=pd.DataFrame({"color": colour}))


DATA = coloured([1] * 8 + [0] * 4, [1] * 4 + [0] * 8)


def test_a_perfect_translation_flips_every_decision_of_a_colour_classifier(tmp_path):
    result = measure_flips(RedMeansPositive(), FakeTranslator(swap=True), DATA, "color", ("red", "green"), tmp_path)
    red, green = result["directions"]
    assert (red["from"], red["to"], red["n"], green["n"]) == ("red", "green", 12, 12)
    assert red["translation"]["probe_target_share"] == green["translation"]["probe_target_share"] == 1.0
    assert red["direction"] == "red->green" and result["reliable"] and red["translation"]["warning"] is None
    cells = {c["class"]: c for c in red["classes"]}
    assert cells["all"]["flip_rate"] == 1.0 and cells["all"]["flipped"] == 12
    # red positives were right and are all wrong once green; red negatives the other way round
    assert cells["positive"]["n"] == 8 and cells["positive"]["accuracy_original"] == 1.0
    assert cells["positive"]["accuracy_translated"] == 0.0
    assert cells["negative"]["accuracy_original"] == 0.0 and cells["negative"]["accuracy_translated"] == 1.0
    assert cells["positive"]["mean_probability_change"] < -0.9
    assert {c["class"]: c["mean_probability_change"] > 0.9 for c in green["classes"]} == {
        "all": True, "positive": True, "negative": True}
    assert green["translation"]["cycle_error"] == 0.0 and result["warnings"] == []
    assert (tmp_path / "pairs.png").read_bytes()[:4] == b"\x89PNG"


def test_a_translation_that_changes_nothing_is_labelled_unreliable(tmp_path):
    result = measure_flips(RedMeansPositive(), FakeTranslator(swap=False), DATA, "color", ("red", "green"), tmp_path)
    assert not result["reliable"]
    assert all(d["translation"]["probe_target_share"] == 0.0 and not d["reliable"] for d in result["directions"])
    assert [d["translation"]["warning"] for d in result["directions"]] == result["warnings"]
    assert all(d["classes"][0]["flip_rate"] == 0.0 for d in result["directions"])
    assert len(result["warnings"]) == 2 and "red \u2192 green" in result["warnings"][0]
    assert "unreliable" in result["warnings"][0]


class GreyTranslator(FakeTranslator):
    """Every image to flat grey, both ways: the colour probe may be fooled, the round trip cannot."""

    def translate(self, images, direction):
        return np.full_like(images, 128)


def test_a_translation_that_loses_the_image_fails_the_cycle_check(tmp_path):
    result = measure_flips(RedMeansPositive(), GreyTranslator(True), DATA, "color", ("red", "green"), tmp_path)
    for d in result["directions"]:
        t = d["translation"]
        assert t["cycle_error_ratio"] > 0.5 and not d["reliable"]
        assert t["cycle_error_ratio"] == pytest.approx(t["cycle_error"] / t["typical_distance"], rel=1e-3)
        assert "translating back lands" in t["warning"] and "unreliable" in t["warning"]


def test_a_translator_of_the_swapped_values_is_used_the_right_way_round(tmp_path):
    # Its A is green: green images go through its a_to_b. A swap is symmetric, so the result must match.
    swapped = measure_flips(RedMeansPositive(), FakeTranslator(True, ("green", "red")), DATA, "color",
                            ("red", "green"), tmp_path)
    assert [d["from"] for d in swapped["directions"]] == ["red", "green"]
    assert swapped["reliable"] and swapped["directions"][0]["classes"][0]["flip_rate"] == 1.0


def test_a_translator_of_another_attribute_or_size_is_refused(tmp_path):
    other = FakeTranslator(True)
    other.cfg = TranslatorConfig(attribute="skin_tone", values=("light", "dark"), image_size=16)
    with pytest.raises(DebiasError, match="translates skin_tone light<->dark, not color red<->green"):
        measure_flips(RedMeansPositive(), other, DATA, "color", ("red", "green"), tmp_path)
    bigger = FakeTranslator(True)
    bigger.cfg.image_size = 32
    with pytest.raises(DebiasError, match="works on 32px images but the model on 16px"):
        measure_flips(RedMeansPositive(), bigger, DATA, "color", ("red", "green"), tmp_path)


def test_a_cell_counts_flips_and_intervals_as_computed_by_hand():
    labels = np.array([1, 1, 0, 0])
    before, after = np.array([0.9, 0.6, 0.4, 0.2]), np.array([0.3, 0.7, 0.6, 0.1])
    cell = _cell("all", labels, before, after, np.ones(4, bool))
    assert (cell["n"], cell["flipped"], cell["flip_rate"]) == (4, 2, 0.5)
    assert cell["flip_rate_ci"] == pytest.approx([float(v) for v in wilson_interval(2, 4)])
    change = after - before                                   # -0.6, +0.1, +0.2, -0.1
    assert cell["mean_probability_change"] == pytest.approx(-0.1)
    half = 3.182446305284263 * change.std(ddof=1) / 2         # t(0.975, 3) * sd / sqrt(4)
    assert cell["mean_probability_change_ci"] == pytest.approx([-0.1 - half, -0.1 + half])
    # before: decisions 1, 1, 0, 0 (all right); after: 0, 1, 1, 0 (right on the 2nd and 4th)
    assert (cell["accuracy_original"], cell["accuracy_translated"]) == (1.0, 0.5)
    single = _cell("positive", labels, before, after, np.array([True, False, False, False]))
    assert single["mean_probability_change_ci"] is None      # one image: no interval, never a made-up one


def test_the_probe_sees_block_means():
    image = np.zeros((1, 16, 16, 3), np.uint8)
    image[0, :, :8, 0] = 255                                   # left half red
    features = probe_features(image).reshape(8, 8, 3)
    assert features[:, :4, 0].min() == 1.0 and features[:, 4:, 0].max() == 0.0 and features[..., 1:].max() == 0


def test_quality_warnings_name_a_probe_that_cannot_tell_the_values_apart():
    result = {"attribute": "skin_tone", "values": ["light", "dark"], "probe": {"held_out_accuracy": 0.55},
              "directions": [{"from": "light", "to": "dark", "reliable": True,
                              "translation": {"probe_target_share": 0.9, "warning": None}}]}
    [note] = quality_warnings(result)
    assert "55% of held-out real images" in note and "every flip rate here is unreliable" in note


def test_values_need_enough_images_each():
    with pytest.raises(DebiasError, match="no attribute 'colour'; its attributes: color"):
        value_indices(DATA, "colour", ("red", "green"))
    few = coloured([1] * 3, [0] * 12)
    with pytest.raises(DebiasError, match=r"3 images of value 'red'.*at least 10 of each value \(it has green: 12, "
                                          r"red: 3\)"):
        value_indices(few, "color", ("red", "green"))


def test_a_trained_translator_reloads_to_the_same_translations(tmp_path):
    cfg = TranslatorConfig(attribute="color", values=("red", "green"), image_size=16, epochs=1, n_filters=4,
                           n_blocks=1, batch_size=4)
    reds, greens = DATA.images[:12], DATA.images[12:]
    translator = train_translator(reds, greens, cfg, torch.device("cpu"))
    assert [h["epoch"] for h in cfg.history] == [1] and np.isfinite(cfg.history[0]["cycle"])
    translator.save(tmp_path / "t")
    again = load_translator(tmp_path / "t")
    assert again.cfg.values == ("red", "green") and again.cfg.history == json.loads(json.dumps(cfg.history))
    for direction in ("a_to_b", "b_to_a"):
        np.testing.assert_array_equal(again.translate(reds, direction), translator.translate(reds, direction))
    assert translator.translate(reds, "a_to_b").dtype == np.uint8


def test_a_folder_that_is_not_a_translator_is_refused(tmp_path):
    with pytest.raises(ModelError, match="no such translator directory"):
        load_translator(tmp_path / "missing")
    write_json(tmp_path / "model" / "config.json", {"model": {}, "version": "x"})
    with pytest.raises(ModelError, match="is not a translator"):
        load_translator(tmp_path / "model")
    write_json(tmp_path / "broken" / "config.json", {"kind": "translator", "attribute": "color",
                                                     "values": ["red", "green"]})
    (tmp_path / "broken" / "translator.pt").write_bytes(b"not torch")
    with pytest.raises(ModelError, match="unreadable translator"):
        load_translator(tmp_path / "broken")


def test_translator_options_are_checked():
    with pytest.raises(DebiasError, match="two different attribute values"):
        TranslatorConfig(attribute="color", values=("red", "red"))
    with pytest.raises(DebiasError, match="epochs must be a whole number from 1"):
        TranslatorConfig(attribute="color", values=("red", "green"), epochs=0)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cf")
    data = folder / "d.npz"
    save_npz(make_synthetic(24, 24, image_size=16, seed=0, balanced=True), data)
    assert main(["train", str(data), "--out", str(folder / "m"), "--method", "standard", "--epochs", "1",
                 "--image-size", "16", "--val-fraction", "0", "--no-progress"]) == 0
    return folder


def test_counterfactual_cli_end_to_end_and_with_a_reused_translator(tiny_model, capsys):
    data, model, out = tiny_model / "d.npz", tiny_model / "m", tiny_model / "out"
    assert main(["counterfactual", str(model), str(data), "--attribute", "lighting", "--values", "bright:dim",
                 "--out", str(out), "--epochs", "1", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "counterfactual test of lighting bright \u2194 dim" in printed and "flipped" in printed
    result = json.loads((out / "counterfactual.json").read_text())
    assert result["translator"]["trained"] and (out / "translator" / "config.json").is_file()
    assert [(d["from"], d["to"]) for d in result["directions"]] == [("bright", "dim"), ("dim", "bright")]
    for d in result["directions"]:
        assert d["classes"][0]["class"] == "all" and d["classes"][0]["n"] == d["n"]
        assert 0 <= d["classes"][0]["flip_rate_ci"][0] <= d["classes"][0]["flip_rate"]
    assert (out / "pairs.png").is_file()
    # The same translator, values given the other way round: the directions follow the request.
    again = tiny_model / "again"
    assert main(["counterfactual", str(model), str(data), "--attribute", "lighting", "--values", "dim:bright",
                 "--out", str(again), "--translator", str(out / "translator"), "--no-progress"]) == 0
    reused = json.loads((again / "counterfactual.json").read_text())
    assert not reused["translator"]["trained"] and not (again / "translator").exists()
    flips = {(d["from"], d["to"]): d["classes"][0]["flipped"] for d in reused["directions"]}
    assert flips == {(d["from"], d["to"]): d["classes"][0]["flipped"] for d in result["directions"]}


@pytest.mark.parametrize("args, message", [
    (["--values", "bright"], "expected two different attribute values as A:B"),
    (["--values", "dim:dim"], "expected two different attribute values as A:B"),
    (["--values", "light:dark", "--attribute", "skin_tone"], "images of value 'light'; a counterfactual test needs"),
    (["--values", "a:b", "--attribute", "mood"], "the dataset has no attribute 'mood'"),
    (["--values", "bright:dim", "--translator", "MODEL"], "is not a translator"),
    (["--values", "bright:dim", "SET"], "is a model set (one model per seed); test its members one by one"),
])
def test_counterfactual_cli_bad_input_is_one_line_and_exit_2(tiny_model, capsys, args, message):
    args = [str(tiny_model / "m") if a == "MODEL" else a for a in args]
    model = str(tiny_model / "m")
    if "SET" in args:  # a set of one member: the tiny model
        args.remove("SET")
        model = str(tiny_model / "set")
        (tiny_model / "set").mkdir(exist_ok=True)
        (tiny_model / "set" / MANIFEST).write_text(json.dumps({"seeds": [0], "members": ["seed-0"]}))
        if not (tiny_model / "set" / "seed-0").exists():
            (tiny_model / "set" / "seed-0").symlink_to(tiny_model / "m")
    if "--attribute" not in args:
        args += ["--attribute", "lighting"]
    try:
        code = main(["counterfactual", model, str(tiny_model / "d.npz"), "--out",
                     str(tiny_model / "bad"), "--epochs", "1", "--no-progress", *args])
    except SystemExit as exc:  # argparse's refusals exit from inside the parser
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tiny_model / "bad").exists()


def test_a_probe_that_cannot_tell_the_values_apart_makes_every_direction_unreliable(tmp_path):
    # Both "values" hold the same kind of image: no probe can tell them apart on held-out images.
    same = coloured([1] * 6 + [0] * 6, [1] * 6 + [0] * 6)
    same.images[12:] = same.images[:12]
    result = measure_flips(RedMeansPositive(), FakeTranslator(swap=True), same, "color", ("red", "green"), tmp_path)
    assert result["probe"]["held_out_accuracy"] < 0.8
    assert not result["reliable"] and not any(d["reliable"] for d in result["directions"])
    assert "cannot check the translations" in result["warnings"][0]
