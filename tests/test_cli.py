"""Console tools end to end, and their handling of bad input."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ptychopinn.bundle import ARCHIVE_NAME, load_model
from ptychopinn.cli import inference as inference_cli
from ptychopinn.cli import simulate as simulate_cli
from ptychopinn.cli import train as train_cli
from ptychopinn.data.npz import load_npz
from ptychopinn.errors import ArchiveError
from train_flags import fast_train

SIM = ["--N", "32", "--object_size", "80", "--step", "6", "--nphotons", "1e5"]
FAST_TRAIN = fast_train(2)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A simulated train/test pair and one trained model, shared by the tests below."""
    d = tmp_path_factory.mktemp("cli")
    assert simulate_cli.main(["--output", str(d / "train.npz"), *SIM, "--seed", "1"]) == 0
    assert (
        simulate_cli.main(
            [
                "--output",
                str(d / "test.npz"),
                *SIM,
                "--seed",
                "1",
                "--object_seed",
                "9",
                "--picture",
                "false",
            ]
        )
        == 0
    )
    code = train_cli.main(
        [
            "--train_data_file",
            str(d / "train.npz"),
            "--test_data_file",
            str(d / "test.npz"),
            "--output_dir",
            str(d / "model"),
            "--do_stitching",
            *FAST_TRAIN,
        ]
    )
    assert code == 0
    return d


def test_simulate_writes_contract_npz_and_picture(workdir):
    data = load_npz(workdir / "train.npz")
    assert data.N == 32 and data.object is not None and data.labels is not None
    assert (workdir / "train.png").stat().st_size > 1000
    assert not (workdir / "test.png").exists()


def test_simulate_warns_when_the_network_cannot_train_on_its_pattern_size(tmp_path, caplog):
    args = ["--object_size", "64", "--step", "8", "--nphotons", "1e5", "--picture", "false"]
    with caplog.at_level("WARNING", logger="ptychopinn.cli.simulate"):
        assert simulate_cli.main(["--output", str(tmp_path / "a.npz"), "--N", "32", *args]) == 0
        assert not caplog.records
        assert simulate_cli.main(["--output", str(tmp_path / "b.npz"), "--N", "31", *args]) == 0
    assert load_npz(tmp_path / "b.npz").N == 31  # simulated all the same
    assert "31x31 patterns" in caplog.text and "N of 32, 64, 128, 256 only" in caplog.text


def test_train_writes_archive_logs_and_pictures(workdir):
    model_dir = workdir / "model"
    for name in (
        ARCHIVE_NAME,
        "resolved_config.yaml",
        "loss_curve.png",
        "logs/metrics.csv",
        "checkpoints/last.ckpt",
        "reconstructed_amplitude.png",
        "reconstructed_phase.png",
        "metrics.json",
        "comparison_plot.png",
    ):
        assert (model_dir / name).exists(), name
    with zipfile.ZipFile(model_dir / ARCHIVE_NAME) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        assert not any(n.endswith((".pkl", ".dill")) for n in zf.namelist())
    assert manifest["backend"] == "pytorch" and manifest["format_version"] == 2
    loaded = load_model(model_dir)
    assert loaded.model_config.N == 32 and loaded.training_config.nepochs == 2


def test_inference_writes_pictures_npz_and_metrics(workdir, capsys):
    out = workdir / "infer"
    code = inference_cli.main(
        [
            "--model_path",
            str(workdir / "model" / ARCHIVE_NAME),
            "--test_data",
            str(workdir / "test.npz"),
            "--output_dir",
            str(out),
            "--torch-accelerator",
            "cpu",
            "--torch-inference-batch-size",
            "7",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    for name in (
        "reconstructed_amplitude.png",
        "reconstructed_phase.png",
        "reconstruction.npz",
        "metrics.json",
        "comparison_plot.png",
    ):
        assert (out / name).exists(), name
    with np.load(out / "reconstruction.npz") as z:
        assert z["object"].dtype == np.complex64 and z["object"].shape == (80, 80)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= {"amp_ssim", "phase_ssim", "frc50"}
    assert summary["positions"] == load_npz(workdir / "test.npz").n_positions


def test_an_output_dir_that_is_a_file_is_named(workdir, tmp_path, capsys):
    in_the_way = tmp_path / "results"
    in_the_way.write_text("not a directory")
    argv = ["--model_path", str(workdir / "model"), "--test_data", str(workdir / "test.npz")]
    code, err = _run(inference_cli.main, [*argv, "--output_dir", str(in_the_way)], capsys)
    assert code == 2 and f"{in_the_way}: expected a directory" in err and "in the way" in err
    assert in_the_way.read_text() == "not a directory"


def test_refine_lsqml_without_pty_chi_is_refused_before_reconstructing(
    workdir, tmp_path, capsys, monkeypatch
):
    import ptychopinn.benchmarking as benchmarking

    monkeypatch.setattr(benchmarking, "lsqml_unavailable_reason", lambda: "Pty-Chi is missing")
    out = tmp_path / "lsqml"
    argv = ["--model_path", str(workdir / "model"), "--test_data", str(workdir / "test.npz")]
    code, err = _run(
        inference_cli.main, [*argv, "--output_dir", str(out), "--refine", "lsqml:2"], capsys
    )
    assert code == 2 and "--refine lsqml:2: Pty-Chi is missing" in err
    assert not out.exists() or not any(out.iterdir())


def test_inference_subsets(workdir, capsys):
    out = workdir / "infer_sub"
    assert (
        inference_cli.main(
            [
                "--model_path",
                str(workdir / "model"),
                "--test_data",
                str(workdir / "test.npz"),
                "--output_dir",
                str(out),
                "--n_images",
                "10",
                "--comparison_plot",
                "false",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["positions"] == 10
    assert not (out / "comparison_plot.png").exists()


def test_inference_reads_its_config_and_names_what_is_missing(workdir, tmp_path, capsys):
    """ptycho_inference's flags are InferenceConfig's: a YAML gives them, flags win."""
    cfg = tmp_path / "infer.yaml"
    cfg.write_text(
        f"inference:\n  model_path: {workdir / 'model'}\n  test_data_file: {workdir / 'test.npz'}\n"
        f"  n_groups: 12\n  output_dir: {tmp_path / 'from_yaml'}\nexecution:\n  accelerator: cpu\n"
    )
    assert inference_cli.main(["--config", str(cfg), "--n_groups", "9"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["positions"] == 9 and summary["output_dir"] == str(tmp_path / "from_yaml")
    assert (tmp_path / "from_yaml" / "reconstruction.npz").exists()
    code = inference_cli.main(["--test_data", str(workdir / "test.npz")])
    err = capsys.readouterr().err
    assert code == 2 and "model_path: required" in err and "Traceback" not in err


def test_cli_overrides_yaml(workdir, tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        "model:\n  N: 32\n  n_filters_scale: 1\ntraining:\n  nepochs: 5\n"
        f"  train_data_file: {workdir / 'train.npz'}\n"
    )
    code = train_cli.main(
        [
            "--config",
            str(cfg),
            "--nepochs",
            "1",
            "--output_dir",
            str(tmp_path / "m"),
            "--torch-accelerator",
            "cpu",
            "--torch-enable-progress-bar",
            "false",
            "--probe_big",
            "false",
        ]
    )
    assert code == 0
    resolved = (tmp_path / "m" / "resolved_config.yaml").read_text()
    assert "nepochs: 1" in resolved and "probe_big: false" in resolved
    assert "n_filters_scale: 1" in resolved


def _run(main, argv, capsys) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--gridsize", "two"], "gridsize"),
        (["--model_type", "gan"], "model_type"),
        (["--probe_big", "maybe"], "probe_big"),
        (["--backend", "jax"], "backend"),
        (["--torch-accelerator", "tpu"], "accelerator"),
        (["--nepochs", "0"], "nepochs"),
    ],
)
def test_train_bad_flag_values(workdir, tmp_path, capsys, argv, expected):
    code, err = _run(
        train_cli.main,
        ["--train_data_file", str(workdir / "train.npz"), "--output_dir", str(tmp_path), *argv],
        capsys,
    )
    assert code == 2 and expected in err and "Traceback" not in err


def test_train_yaml_unknown_key(workdir, tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("nepoch: 3\n")
    code, err = _run(
        train_cli.main,
        ["--config", str(cfg), "--train_data_file", str(workdir / "train.npz")],
        capsys,
    )
    assert code == 2 and "nepoch" in err and "nepochs" in err


def test_misspelt_flag_is_rejected(capsys):
    with pytest.raises(SystemExit) as exc:
        train_cli.main(["--nepoch", "3"])
    assert exc.value.code == 2 and "--nepoch" in capsys.readouterr().err


@pytest.mark.parametrize("problem", ["missing", "corrupt", "wrong_keys", "nan", "shape"])
def test_train_bad_data_files(workdir, tmp_path, capsys, problem):
    path = tmp_path / "bad.npz"
    good = dict(np.load(workdir / "train.npz"))
    if problem == "corrupt":
        path.write_bytes(b"PK\x03\x04 not really a zip")
    elif problem == "wrong_keys":
        np.savez(path, diffraction_patterns=good["diff3d"])
    elif problem == "nan":
        good["diff3d"][0, 0, 0] = np.nan
        np.savez(path, **good)
    elif problem == "shape":
        good["diff3d"] = good["diff3d"][:, :, :30]
        np.savez(path, **good)
    out = tmp_path / "out"
    code, err = _run(
        train_cli.main,
        ["--train_data_file", str(path), "--output_dir", str(out), *FAST_TRAIN],
        capsys,
    )
    assert code == 2 and "Traceback" not in err and str(path) in err
    assert not (out / ARCHIVE_NAME).exists()


def _rewrite_archive(src: Path, dst: Path, mutate) -> None:
    with zipfile.ZipFile(src) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    mutate(members)
    with zipfile.ZipFile(dst, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


class _Boom:
    def __reduce__(self):
        return (Path("/tmp/ptychopinn_pwned").touch, ())


def test_archive_problems_give_clear_errors(workdir, tmp_path, capsys):
    archive = workdir / "model" / ARCHIVE_NAME
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])

    def manifest_with(**fields):
        def mutate(m):
            manifest = json.loads(m["manifest.json"])
            manifest.update(fields)
            m["manifest.json"] = json.dumps(manifest).encode()

        return mutate

    def pickled(m):
        buf = io.BytesIO()
        pickle.dump({"weights": _Boom()}, buf)
        m["weights.pt"] = buf.getvalue()

    def rehash(m, member):
        manifest = json.loads(m["manifest.json"])
        manifest["sha256"][member] = hashlib.sha256(m[member]).hexdigest()
        manifest["sizes"][member] = len(m[member])
        m["manifest.json"] = json.dumps(manifest).encode()

    def pickled_and_rehashed(m):
        pickled(m)
        rehash(m, "weights.pt")

    def wider_config(m):  # weights of one configuration, configs.json of another
        configs = json.loads(m["configs.json"])
        configs["model"]["n_filters_scale"] *= 2
        m["configs.json"] = json.dumps(configs).encode()
        rehash(m, "configs.json")

    cases = {"truncated": (truncated, "truncated")}
    for name, mutate, expected in [
        ("future", manifest_with(format_version=99), "newer"),
        ("earlier", manifest_with(format_version=1), "earlier decoder layout.*retrain"),
        ("backend", manifest_with(backend="jax"), "'backend': expected one of"),
        ("tf-weights", manifest_with(backend="tensorflow"), "'weights.h5' is missing"),
        ("version-text", manifest_with(format_version="2"), "positive integer; found '2'"),
        ("hash-list", manifest_with(sha256=["x"]), "'sha256' must be a mapping"),
        ("no-hashes", manifest_with(sha256={}), "expected the SHA-256 of member 'configs.json'"),
        ("scale-text", manifest_with(intensity_scale="big"), "'intensity_scale' must be a pos"),
        ("scale-negative", manifest_with(intensity_scale=-1.0), "'intensity_scale' must be"),
        ("energy-text", manifest_with(reference_energy="x"), "'reference_energy' must be"),
        ("inflates", manifest_with(sizes={"weights.pt": 10, "configs.json": 10}), "inflates"),
        ("tampered", pickled, "SHA-256"),
        ("pickle", pickled_and_rehashed, "safely"),
        ("configs", wider_config, "weights do not fit this model.*another shape"),
    ]:
        path = tmp_path / f"{name}.zip"
        _rewrite_archive(archive, path, mutate)
        cases[name] = (path, expected)
    cases["missing"] = (tmp_path / "nowhere", "not found")
    Path("/tmp/ptychopinn_pwned").unlink(missing_ok=True)
    for name, (path, expected) in cases.items():
        with pytest.raises(ArchiveError, match=expected):
            load_model(path)
        code, err = _run(
            inference_cli.main,
            [
                "--model_path",
                str(path),
                "--test_data",
                str(workdir / "test.npz"),
                "--output_dir",
                str(tmp_path / name),
            ],
            capsys,
        )
        assert code == 2 and "Traceback" not in err, name
    assert not Path("/tmp/ptychopinn_pwned").exists()


def test_unwritable_output_dir(workdir, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    code, err = _run(
        inference_cli.main,
        [
            "--model_path",
            str(workdir / "model"),
            "--test_data",
            str(workdir / "test.npz"),
            "--output_dir",
            str(blocker / "out"),
        ],
        capsys,
    )
    assert code == 2 and "Traceback" not in err


def test_console_scripts_are_installed():
    for name in ("ptycho_simulate", "ptycho_train", "ptycho_inference", "ptycho_evaluate"):
        proc = subprocess.run(
            [Path(sys.executable).parent / name, "--help"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0 and "usage" in proc.stdout


def test_evaluate_scores_a_reconstruction(workdir, tmp_path, capsys):
    from ptychopinn.cli import evaluate as evaluate_cli

    recon = workdir / "model" / "reconstruction.npz"
    out = tmp_path / "m.json"
    code = evaluate_cli.main(
        [
            "--reconstruction",
            str(recon),
            "--ground_truth",
            str(workdir / "test.npz"),
            "--output",
            str(out),
            "--comparison_plot",
            str(tmp_path / "c.png"),
        ]
    )
    assert code == 0
    metrics = json.loads(out.read_text())
    assert metrics == json.loads(capsys.readouterr().out)
    assert -1 <= metrics["amp_ssim"] <= 1 and (tmp_path / "c.png").exists()
    # The truth scores perfectly against itself.
    truth = tmp_path / "truth.npz"
    np.savez(truth, object=load_npz(workdir / "test.npz").object)
    assert (
        evaluate_cli.main(
            ["--reconstruction", str(truth), "--ground_truth", str(workdir / "test.npz")]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["amp_ssim"] > 0.999
    code, err = _run(
        evaluate_cli.main,
        [
            "--reconstruction",
            str(workdir / "train.npz"),
            "--ground_truth",
            str(workdir / "test.npz"),
        ],
        capsys,
    )
    assert code == 2 and "'object'" in err
    placeholder = tmp_path / "placeholder.npz"
    arrays = dict(np.load(workdir / "test.npz"))
    arrays["objectGuess"] = np.zeros_like(arrays["objectGuess"])
    np.savez(placeholder, **arrays)
    code, err = _run(
        evaluate_cli.main,
        ["--reconstruction", str(recon), "--ground_truth", str(placeholder)],
        capsys,
    )
    assert code == 2
    assert "placeholder.npz: key 'objectGuess': expected the ground truth object" in err
    cropped = tmp_path / "cropped.npz"
    np.savez(cropped, object=load_npz(workdir / "test.npz").object[:-8])
    code, err = _run(
        evaluate_cli.main,
        ["--reconstruction", str(cropped), "--ground_truth", str(workdir / "test.npz")],
        capsys,
    )
    assert code == 2 and f"{cropped} against {workdir / 'test.npz'}: " in err


INTERRUPT_SCRIPT = """
import os, signal, sys, threading
import lightning as L
from ptychopinn.cli import train as train_cli

# A process started in the background of a non-interactive shell inherits SIGINT ignored;
# a user's terminal does not. Restore Python's Ctrl-C handler so the test sees the latter.
signal.signal(signal.SIGINT, signal.default_int_handler)

class Interrupt(L.Callback):
    def on_train_batch_end(self, trainer, *args):
        if trainer.current_epoch == 1:
            os.kill(os.getpid(), signal.SIGINT)

import ptychopinn.workflows.execution as execution
original = execution.build_trainer
def with_interrupt(*a, **k):
    k["extra_callbacks"] = [Interrupt()]
    return original(*a, **k)
execution.build_trainer = with_interrupt
import ptychopinn.workflows.train as train_mod
train_mod.build_trainer = with_interrupt
sys.exit(train_cli.main(sys.argv[1:]))
"""


def test_ctrl_c_leaves_a_resumable_checkpoint(workdir, tmp_path):
    script = tmp_path / "interrupt.py"
    script.write_text(INTERRUPT_SCRIPT)
    out = tmp_path / "model"
    args = [
        "--train_data_file",
        str(workdir / "train.npz"),
        "--output_dir",
        str(out),
        *FAST_TRAIN,
        "--nepochs",
        "3",
    ]
    proc = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 130, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "--resume_from" in proc.stderr
    ckpt = out / "checkpoints" / "interrupted.ckpt"
    assert ckpt.exists() and not (out / ARCHIVE_NAME).exists()
    code = train_cli.main(
        [
            "--train_data_file",
            str(workdir / "train.npz"),
            "--output_dir",
            str(out),
            "--resume_from",
            str(ckpt),
            *FAST_TRAIN,
            "--nepochs",
            "3",
        ]
    )
    assert code == 0 and (out / ARCHIVE_NAME).exists()
