"""``--torch-logger mlflow``: a SQLite store in the output directory, params, per-epoch
metrics, the archive and pictures as artifacts; a missing extra is one clear line."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from ptychopinn.bundle import ARCHIVE_NAME
from ptychopinn.cli import simulate as simulate_cli
from ptychopinn.cli import train as train_cli
from ptychopinn.config import ExecutionConfig, TrainingConfig
from ptychopinn.errors import ConfigError
from ptychopinn.workflows import execution
from train_flags import fast_train

for module in ("mlflow", "sqlalchemy", "alembic"):
    pytest.importorskip(module, reason="the mlflow extra is not installed")

from mlflow.tracking import MlflowClient  # noqa: E402

SIM = ["--N", "32", "--object_size", "64", "--step", "8", "--nphotons", "1e5", "--seed", "1"]
TRAIN = fast_train(2, "--torch-logger", "mlflow")


@pytest.fixture(scope="module")
def scans(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("mlflow")
    for name, extra in (("train", []), ("test", ["--object_seed", "5"])):
        argv = ["--output", str(d / f"{name}.npz"), *SIM, *extra, "--picture", "false"]
        assert simulate_cli.main(argv) == 0
    return d


def _only_run(uri: str, experiment: str = "ptychopinn"):
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment!r} in {uri}"
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    return client, runs[0]


def test_training_logs_to_a_sqlite_store_in_the_output_dir(scans, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(scans)  # MLflow's default artifact root would be ./mlruns here
    out = scans / "model"
    argv = ["--train_data_file", str(scans / "train.npz"), "--output_dir", str(out)]
    argv += ["--test_data_file", str(scans / "test.npz"), "--do_stitching", *TRAIN]
    assert train_cli.main(argv) == 0
    assert (out / "mlflow.db").is_file() and not (scans / "mlruns").exists()
    client, run = _only_run(f"sqlite:///{out / 'mlflow.db'}")
    assert run.info.status == "FINISHED"
    # the configuration as parameters, the loss per epoch, the test scan's scores
    assert run.data.params["training_config/nepochs"] == "2"
    assert run.data.params["model_config/N"] == "32"
    loss_key = next(k for k in run.data.metrics if k.endswith("_epoch") and "loss" in k)
    assert len(client.get_metric_history(run.info.run_id, loss_key)) == 2
    assert 0.0 < run.data.metrics["test_amp_ssim"] <= 1.0
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    for name in (ARCHIVE_NAME, "resolved_config.yaml", "loss_curve.png", "metrics.json"):
        assert name in artifacts, (name, artifacts)
    assert list((out / "mlartifacts").rglob(ARCHIVE_NAME))
    # the CSV log stays beside MLflow: loss_curve.png and resumed histories come from it
    assert (out / "logs" / "metrics.csv").is_file()


def test_tracking_uri_from_the_environment_and_the_flag(scans, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may land in ./mlruns
    env_uri = f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", env_uri)
    ex = ExecutionConfig(logger="mlflow")
    assert execution.mlflow_store(ex, tmp_path / "out") == (
        env_uri,
        (tmp_path / "mlartifacts").as_uri(),
    )
    server = ExecutionConfig(logger="mlflow", mlflow_tracking_uri="http://tracking:5000")
    assert execution.mlflow_store(server, tmp_path) == ("http://tracking:5000", None)
    flag_uri = f"sqlite:///{tmp_path / 'flag.db'}"
    out = tmp_path / "model"
    argv = ["--train_data_file", str(scans / "train.npz"), "--output_dir", str(out), *TRAIN]
    argv += ["--torch-mlflow-tracking-uri", flag_uri, "--torch-mlflow-experiment", "beamline"]
    assert train_cli.main(argv) == 0
    assert not (tmp_path / "env.db").exists() and not (out / "mlflow.db").exists()
    _only_run(flag_uri, "beamline")
    assert not (tmp_path / "mlruns").exists() and list((tmp_path / "mlartifacts").rglob("*.zip"))


def test_a_missing_extra_is_one_line_naming_it(scans, tmp_path, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(
        execution.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "alembic" else real(name, *a),
    )
    with pytest.raises(ConfigError, match=r"missing: alembic.*ptychopinn\[mlflow\]"):
        execution.build_trainer(
            ExecutionConfig(logger="mlflow"),
            TrainingConfig(nepochs=1),
            output_dir=tmp_path,
            monitor="loss",
        )
    argv = ["--train_data_file", str(scans / "train.npz"), "--output_dir", str(tmp_path), *TRAIN]
    assert train_cli.main(argv) != 0
    err = capsys.readouterr().err
    assert "pip install 'ptychopinn[mlflow]'" in err and "Traceback" not in err
