"""Options that describe themselves: descriptions on every field, commented YAML that
round-trips, ``--print-config``, shipped recipes, and a current ``docs/options.md``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from ptychopinn.cli import train as train_cli
from ptychopinn.config import (
    CONFIG_CLASSES,
    ExecutionConfig,
    TrainingConfig,
    config_sections,
    load_execution_config,
    load_training_config,
)
from ptychopinn.errors import ConfigError
from ptychopinn.options import commented_yaml, options_markdown, recipes

DOCS = Path(__file__).resolve().parents[1] / "docs" / "options.md"


@pytest.mark.parametrize("cls", CONFIG_CLASSES, ids=lambda c: c.__name__)
def test_every_field_has_a_one_line_description(cls):
    for f in dataclasses.fields(cls):
        doc = f.metadata.get("doc", "")
        assert doc and "\n" not in doc and len(doc) <= 100, (cls.__name__, f.name, doc)


def test_commented_yaml_round_trips_and_comments_every_key(tmp_path):
    training = TrainingConfig(nepochs=7, batch_size=8, learning_rate=3e-4, warmup_epochs=0.5)
    execution = ExecutionConfig(accelerator="cpu", num_workers=1)
    text = commented_yaml(config_sections(training, execution), "a header")
    assert text.startswith("# a header\n")
    lines = text.splitlines()
    keys = [i for i, line in enumerate(lines) if line.startswith("  ") and ":" in line]
    keys = [i for i in keys if not lines[i].lstrip().startswith("#")]
    assert keys and all(lines[i - 1].lstrip().startswith("# ") for i in keys)
    path = tmp_path / "run.yaml"
    path.write_text(text)
    assert set(yaml.safe_load(text)) == {"model", "training", "execution"}
    assert load_training_config(path) == training
    assert load_execution_config(path) == execution


def test_print_config_prints_the_resolved_config_and_exits(tmp_path, capsys):
    assert train_cli.main(["--print-config", "--nepochs", "3", "--torch-logger", "none"]) == 0
    text = capsys.readouterr().out
    assert "# training epochs (passes over all groups)\n  nepochs: 3" in text
    path = tmp_path / "printed.yaml"
    path.write_text(text)
    # the printed file is a config: loading it gives what the flags asked for
    assert load_training_config(path) == TrainingConfig(nepochs=3)
    assert load_execution_config(path) == ExecutionConfig(logger="none")
    assert not list(tmp_path.glob("training_outputs"))


def test_optimiser_flags_are_training_flags_and_old_spellings_still_work(capsys, caplog):
    args = ["--print-config", "--learning_rate", "3e-4", "--torch-scheduler", "step"]
    with caplog.at_level("WARNING"):
        assert train_cli.main(args) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["training"]["learning_rate"] == 3e-4
    assert printed["training"]["scheduler"] == "step"
    assert "learning_rate" not in printed["execution"]
    assert "--torch-scheduler is deprecated; use --scheduler" in caplog.text


def test_checkpoint_hyperparameters_of_0_1_0_load():
    """0.1.0 checkpoints hold the optimiser settings in the execution hyper-parameters."""
    from ptychopinn.model.lightning_module import PINNLightningModule

    sections = config_sections(TrainingConfig(nepochs=2))
    for key in ("learning_rate", "scheduler"):
        sections["training"].pop(key)
    old_execution = {**sections["execution"], "learning_rate": 5e-4, "scheduler": "none"}
    module = PINNLightningModule(sections["model"], sections["training"], old_execution)
    assert module.training_config.learning_rate == 5e-4
    assert module.training_config.scheduler == "none"


def test_help_shows_descriptions(capsys):
    with pytest.raises(SystemExit):
        train_cli.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--nepochs VALUE training epochs (passes over all groups) (default: 30)" in out
    assert "Adam learning rate" in out and "cpu_quick" in out


@pytest.mark.parametrize("name", ["cpu_quick", "gpu_full", "low_dose"])
def test_shipped_recipes_load_by_name(name, capsys):
    assert name in recipes()
    training = load_training_config(name)
    execution = load_execution_config(name)
    raw = yaml.safe_load(recipes()[name].read_text())
    for key, value in raw.get("training", {}).items():
        assert getattr(training, key) == value
    for key, value in raw.get("execution", {}).items():
        assert getattr(execution, key) == value
    assert train_cli.main(["--config", name, "--print-config"]) == 0
    assert "nepochs" in capsys.readouterr().out


def test_a_file_wins_over_a_recipe_name_and_unknown_names_fail(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("cpu_quick").write_text("training:\n  nepochs: 2\n")
    assert load_training_config("cpu_quick").nepochs == 2
    with pytest.raises(ConfigError, match="not found"):
        load_training_config("no_such_recipe")


def test_resolved_config_is_commented(tmp_path):
    from ptychopinn.cli.train import CONFIG_HEADER
    from ptychopinn.options import save_config_yaml

    path = save_config_yaml(config_sections(TrainingConfig()), tmp_path / "r.yaml", CONFIG_HEADER)
    text = path.read_text()
    assert text.startswith("# PtychoPINN training config") and "# Adam learning rate" in text


def test_docs_options_md_is_current():
    assert DOCS.read_text() == options_markdown(), (
        "docs/options.md is stale: python -m ptychopinn.options > docs/options.md"
    )


def test_refinement_flags_are_generated_from_its_settings():
    """Every ObjectRefineSettings field but the epochs has a --refine_<field> flag;
    a boolean flag alone means true."""
    from ptychopinn.cli import inference as inference_cli
    from ptychopinn.refine.object import ObjectRefineSettings

    parser = inference_cli.build_parser()
    args = parser.parse_args(["--refine_momentum", "0", "--refine_probe", "--refine_seed", "3"])
    settings, given = inference_cli.refine_settings(args)
    assert settings == ObjectRefineSettings(momentum=0.0, refine_probe=True, seed=3)
    assert sorted(given) == ["--refine_momentum", "--refine_probe", "--refine_seed"]
    flags = {a.dest for a in parser._actions}
    names = [f.name for f in dataclasses.fields(ObjectRefineSettings) if f.name != "epochs"]
    expected = {f"refine_{n}".replace("refine_refine_", "refine_") for n in names}
    assert expected <= flags and "refine_epochs" not in flags
    bad = parser.parse_args(["--refine_step", "-1"])
    with pytest.raises(ConfigError, match=r"ObjectRefineSettings\.step"):
        inference_cli.refine_settings(bad)
