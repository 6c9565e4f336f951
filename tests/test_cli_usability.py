"""What a new user meets at the command line: --help with defaults, quiet logs, refused outputs, `debias pack`."""
import argparse
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from api.cli import _service_commands
from audit import demo
from audit.cli import build_parser, main
from audit.loaders import load_dataset

from .test_cli import TRAIN_SMALL, assert_bad_input, run

QUIET = [a for a in TRAIN_SMALL if a != "--no-progress"]


def _all_parsers(parser, path=("debias",)):
    yield " ".join(path), parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _all_parsers(sub, (*path, name))


def test_every_option_has_help_and_shows_its_default():
    parser = build_parser([_service_commands])
    checked = 0
    for where, p in _all_parsers(parser):
        formatter = p._get_formatter()
        for action in p._actions:
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
                continue
            name = f"{where} {'/'.join(action.option_strings) or action.dest}"
            text = formatter._expand_help(action) if action.help else ""
            assert text.strip(), f"{name} has no help text"
            takes_value = action.option_strings and action.nargs != 0
            if takes_value and not action.required:
                assert "(default:" in text, f"{name} does not say its default: {text!r}"
            checked += 1
    assert checked > 60


def test_help_output_lists_defaults(capsys):
    code, out, _ = run(capsys, "train", "--help")
    assert code == 0
    flat = " ".join(out.split())
    for expected in ("--epochs EPOCHS passes over the training data (default: 6)", "(default: 32)",
                     "(default: 0.0005)", "(default: dbvae)", "(default: 100)", "(default: histogram)"):
        assert expected in flat, expected
    assert run(capsys, "demo", "--help")[1].count("--quiet") == 1


def test_quiet_alias_and_progress_only_on_a_terminal(monkeypatch):
    from audit.cli import _progress
    args = build_parser().parse_args(["demo", "--quiet"])
    assert args.no_progress
    args = build_parser().parse_args(["demo"])
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert _progress(args)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert not _progress(args)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, tiny_npz):
    out = tmp_path_factory.mktemp("model") / "dbvae"
    assert main(["train", str(tiny_npz), "--out", str(out), *TRAIN_SMALL]) == 0
    return out


def test_train_shows_progress_on_a_terminal_only(capsys, monkeypatch, tmp_path, tiny_npz):
    code, out, err = run(capsys, "train", tiny_npz, "--out", tmp_path / "piped", *QUIET)  # pytest's stderr: no tty
    assert code == 0 and err == "", err
    assert "for 1 epoch ->" in out and "held-out accuracy" in out  # not "1 epochs"; the validation split
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    code, _, err = run(capsys, "train", tiny_npz, "--out", tmp_path / "tty", *QUIET)
    assert code == 0 and "epoch 1/1" in err  # the bar
    code, _, err = run(capsys, "train", tiny_npz, "--out", tmp_path / "quiet", *QUIET, "--no-progress")
    assert code == 0 and err == ""


def test_audit_refuses_an_existing_folder_unless_forced(capsys, monkeypatch, tmp_path, tiny_npz, tiny_model):
    out = tmp_path / "audit"
    argv = ["audit", tiny_npz, "--model", tiny_model, "--out", out, "--no-figures"]
    code, _, err = run(capsys, *argv)
    assert code == 0 and err == "", err
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert_bad_input(capsys, *argv, match="already exists and is not empty; pass --force")
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before  # nothing written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit"]  # no staging folder either
    (out / "stale.txt").write_text("from an earlier run")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    code, _, err = run(capsys, *argv, "--force")
    assert code == 0 and "encoding" in err  # replaced, with its progress bar on a terminal
    assert not (out / "stale.txt").exists() and (out / "report.json").is_file()
    (tmp_path / "afile").write_text("x")
    assert_bad_input(capsys, "audit", tiny_npz, "--model", tiny_model, "--out", tmp_path / "afile", "--force",
                     match="is a file, not a folder")


def _png(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (20, 24, 3), dtype=np.uint8)  # not square: cropped
    Image.fromarray(pixels).save(path)


def _class_folder(root):
    for i in range(3):
        _png(root / "face" / f"{i}.png", i)
        _png(root / "background" / "sub" / f"{i}.png", 10 + i)
    (root / ".DS_Store").write_text("junk")
    return root


def _manifest_folder(root):
    rows = []
    for i in range(4):
        _png(root / "img" / f"{i}.png", i)
        rows.append({"path": f"img/{i}.png", "label": i % 2, "tone": ["dark", None, "light", "light"][i],
                     "age": 20 + i})
    (root / "notes.txt").write_text("not part of the dataset")
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root


def _same_dataset(a, b):
    assert np.array_equal(np.asarray(a.images), np.asarray(b.images))
    assert np.array_equal(a.labels, b.labels)
    assert list(a.attributes.columns) == list(b.attributes.columns)
    for name in a.attributes.columns:  # NaN and "" both mean no value
        left = a.attributes[name].map(lambda v: "" if pd.isna(v) else str(v)).tolist()
        right = b.attributes[name].map(lambda v: "" if pd.isna(v) else str(v)).tolist()
        assert left == right, name


@pytest.mark.parametrize("layout", [_class_folder, _manifest_folder])
@pytest.mark.parametrize("suffix", [".npz", ".zip"])
def test_pack_round_trips_a_folder(capsys, tmp_path, layout, suffix):
    folder = layout(tmp_path / "photos")
    out = tmp_path / f"data{suffix}"
    code, stdout, err = run(capsys, "pack", folder, "--out", out, "--image-size", "16")
    assert code == 0, err
    assert stdout.startswith(f"wrote {out}: ") and "images" in stdout
    _same_dataset(load_dataset(folder, image_size=16), load_dataset(out, image_size=16))
    if suffix == ".zip":  # the original files, so another size reads as well as from the folder
        _same_dataset(load_dataset(folder, image_size=32), load_dataset(out, image_size=32))
    assert_bad_input(capsys, "pack", folder, "--out", out, match="already exists; pass --force")
    assert run(capsys, "pack", folder, "--out", out, "--image-size", "16", "--force")[0] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["photos", out.name])  # no partial file left


def test_pack_bad_input_is_one_line(capsys, tmp_path):
    folder = _class_folder(tmp_path / "photos")
    assert_bad_input(capsys, "pack", tmp_path / "none", "--out", tmp_path / "d.npz", match="no such folder")
    assert_bad_input(capsys, "pack", folder, "--out", tmp_path / "d.tar", match="must end in .zip or .npz")
    (folder / "face" / "notes.txt").write_text("hello")
    assert_bad_input(capsys, "pack", folder, "--out", tmp_path / "d.zip", match="face/notes.txt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]  # nothing written


def test_the_dataset_bounds_are_options(capsys, tmp_path):
    folder = _class_folder(tmp_path / "photos")
    n = len(load_dataset(folder, image_size=16))
    assert_bad_input(capsys, "pack", folder, "--out", tmp_path / "d.npz", "--image-size", "16",
                     "--max-samples", n - 1, match=f"holds {n} samples, more than max_samples={n - 1}")
    assert_bad_input(capsys, "pack", folder, "--out", tmp_path / "d.npz", "--image-size", "16",
                     "--max-decoded-gib", 1e-6, match="max_decoded_bytes=1073")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]  # nothing written
    assert run(capsys, "pack", folder, "--out", tmp_path / "d.npz", "--image-size", "16", "--max-samples", n)[0] == 0
    assert_bad_input(capsys, "train", tmp_path / "d.npz", "--out", tmp_path / "m", "--image-size", "16",
                     "--max-samples", n - 1, match=f"more than max_samples={n - 1}")
    assert not (tmp_path / "m").exists()
    code, _, err = run(capsys, "train", tmp_path / "d.npz", "--out", tmp_path / "m", "--max-decoded-gib", "0")
    assert code == 2 and "expected a number > 0" in err


@pytest.mark.slow
def test_demo_numbers_its_steps_and_saves_the_comparison(capsys, monkeypatch, tmp_path):
    # The smallest data the demo's audit can cluster (two subgroups of 10 per class), so the test stays short.
    monkeypatch.setattr(demo, "QUICK", demo.DemoSize(faces=40, nonfaces=40, test_per_class=30, image_size=16,
                                                     epochs=1))
    code, out, err = run(capsys, "demo", "--quick", "--out", tmp_path / "demo", "--quiet")
    assert code == 0, err
    assert "epoch 1/1" not in err and "\r" not in err  # no progress bars
    steps = [line.split()[0] for line in out.splitlines() if line[:1].isdigit() and "/" in line.split()[0]]
    assert steps == ["1/5", "2/5", "3/5", "4/5", "5/5"], steps
    assert "for 1 epoch " in out
    saved = (tmp_path / "demo" / "comparison.txt").read_text()
    assert saved.startswith("accuracy per group on the balanced test set") and saved.strip() in out


def test_the_parser_imports_neither_torch_nor_scikit_learn():
    # --help and option errors answer at once: the heavy libraries load when a command runs.
    import subprocess
    code = ("import sys; from audit.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_missing_data_file_or_model_is_refused_before_torch_loads(tmp_path):
    import subprocess
    code = ("import sys; from audit.cli import main; code = main(sys.argv[1:]); "
            "print(code, 'torch' in sys.modules)")
    missing = "no such file or folder: missing.npz"
    for argv, message in ((["train", "missing.npz", "--out", str(tmp_path / "m")], missing),
                          (["evaluate", str(tmp_path), "missing.npz"], missing),
                          (["evaluate", str(tmp_path / "none"), str(tmp_path)], "no such model directory"),
                          (["counterfactual", str(tmp_path / "none"), str(tmp_path), "--attribute", "a", "--values",
                            "x:y", "--out", str(tmp_path / "c")], "no such model directory")):
        run = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
        assert run.stdout.split() == ["2", "False"], (argv, run.stdout, run.stderr)
        assert message in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
