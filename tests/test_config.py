"""Tests for ptychopinn.config: defaults, validation, coercion, YAML I/O and legacy keys."""

from __future__ import annotations

import logging
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ptychopinn.config import (
    ExecutionConfig,
    InferenceConfig,
    ModelConfig,
    TrainingConfig,
    coerce_value,
    from_dict,
    load_config_file,
    load_execution_config,
    load_inference_config,
    load_training_config,
    load_yaml,
    parse_bool,
    save_yaml,
    to_dict,
    update_legacy_dict,
)
from ptychopinn.errors import ConfigError


def _write(tmp_path: Path, text: str, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- defaults


def test_defaults():
    m = ModelConfig()
    # The defaults are the measured recipe (README, benchmarks/quality.py).
    assert (m.N, m.gridsize, m.n_filters_scale, m.model_type) == (64, 2, 1, "pinn")
    assert m.normalization == "batch" and m.global_mixing
    assert m.per_pattern_network and m.network_channels == 1  # one pass per pattern
    assert m.amp_activation == "sigmoid" and m.object_big and m.probe_big and m.pad_object
    assert not m.probe_mask and m.probe_scale == 4.0 and m.gaussian_smoothing_sigma == 0.0

    t = TrainingConfig()
    assert t.model == ModelConfig()
    assert (t.batch_size, t.nepochs, t.n_groups, t.seed) == (16, 30, None, 42)
    # two varied groups per position, drawn from the 7 nearest at gridsize 2
    assert (t.groups_per_position, t.neighbor_count) == (2, 7)
    # half the groups thinned to a lower dose, down to 1% of the counts
    assert (t.dose_augmentation, t.dose_augmentation_min) == (0.5, 0.01)
    assert (t.nll_weight, t.mae_weight, t.realspace_weight, t.realspace_mae_weight) == (
        1.0,
        0.0,
        0.0,
        0.0,
    )
    assert t.nphotons == 1e9 and t.backend == "pytorch" and t.output_dir == "training_outputs"
    assert t.train_data_file is None and t.n_subsample is None and t.subsample_seed is None
    assert t.positions_provided and t.intensity_scale_trainable
    assert not t.probe_trainable and not t.sequential_sampling
    assert t.learning_rate == 1e-3 and t.scheduler == "cosine" and t.gradient_clip_val is None
    assert t.warmup_epochs is None and t.min_lr_ratio == 0.01  # automatic warm-up

    i = InferenceConfig()
    assert i.model_path is None and i.n_groups is None and i.output_dir == "inference_outputs"
    assert i.backend == "auto" and i.debug is False

    e = ExecutionConfig()
    assert (e.accelerator, e.devices, e.strategy, e.precision) == ("auto", 1, "auto", "auto")
    assert e.logger == "csv" and e.inference_batch_size == 64
    assert e.early_stopping_patience is None and e.checkpoint_save_top_k == 1


def test_default_model_instances_are_not_shared():
    a, b = TrainingConfig(), TrainingConfig()
    a.model.N = 128
    assert b.model.N == 64


# ------------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("cls", "kwargs", "field"),
    [
        (ModelConfig, {"N": 48}, "N"),
        (ModelConfig, {"gridsize": 0}, "gridsize"),
        (ModelConfig, {"gridsize": 5}, "gridsize"),
        (ModelConfig, {"n_filters_scale": 0}, "n_filters_scale"),
        (ModelConfig, {"model_type": "gan"}, "model_type"),
        (ModelConfig, {"amp_activation": "tanh"}, "amp_activation"),
        (ModelConfig, {"probe_scale": 0.0}, "probe_scale"),
        (ModelConfig, {"gaussian_smoothing_sigma": -0.5}, "gaussian_smoothing_sigma"),
        (TrainingConfig, {"batch_size": 0}, "batch_size"),
        (TrainingConfig, {"nepochs": 0}, "nepochs"),
        (TrainingConfig, {"mae_weight": -1.0}, "mae_weight"),
        (TrainingConfig, {"realspace_weight": -0.1}, "realspace_weight"),
        (TrainingConfig, {"nphotons": 0.0}, "nphotons"),
        (TrainingConfig, {"n_groups": 0}, "n_groups"),
        (TrainingConfig, {"backend": "jax"}, "backend"),
        (InferenceConfig, {"n_groups": -3}, "n_groups"),
        (ExecutionConfig, {"accelerator": "tpu"}, "accelerator"),
        (ExecutionConfig, {"devices": 0}, "devices"),
        (ExecutionConfig, {"strategy": "fsdp"}, "strategy"),
        (ExecutionConfig, {"precision": "8-true"}, "precision"),
        (ExecutionConfig, {"num_workers": -1}, "num_workers"),
        (TrainingConfig, {"learning_rate": 0.0}, "learning_rate"),
        (TrainingConfig, {"scheduler": "cyclic"}, "scheduler"),
        (TrainingConfig, {"min_lr_ratio": 1.5}, "min_lr_ratio"),
        (ExecutionConfig, {"logger": "wandb"}, "logger"),
        (ExecutionConfig, {"inference_batch_size": 0}, "inference_batch_size"),
    ],
)
def test_out_of_range_names_field_expected_and_found(cls, kwargs, field):
    with pytest.raises(ConfigError) as info:
        cls(**kwargs)
    msg = str(info.value)
    assert f"{cls.__name__}.{field}" in msg
    assert "expected" in msg
    assert repr(next(iter(kwargs.values()))) in msg


def test_pinn_needs_a_physics_loss_but_supervised_does_not():
    with pytest.raises(ConfigError, match="nll_weight"):
        TrainingConfig(nll_weight=0.0, mae_weight=0.0)
    assert TrainingConfig(nll_weight=0.0, mae_weight=1.0).mae_weight == 1.0
    sup = TrainingConfig(model=ModelConfig(model_type="supervised"), nll_weight=0.0)
    assert sup.nll_weight == 0.0


def test_neighbor_count_must_cover_group():
    with pytest.raises(ConfigError, match=r"neighbor_count.*>= gridsize\*\*2 = 9.*found 4"):
        TrainingConfig(model=ModelConfig(gridsize=3), neighbor_count=4)
    # Unset, it fills the group: every gridsize works without naming it.
    assert TrainingConfig(model=ModelConfig(gridsize=3)).neighbor_count == 12
    assert TrainingConfig(model=ModelConfig(gridsize=3), neighbor_count=9).neighbor_count == 9
    gridsize1 = ModelConfig(gridsize=1)
    assert TrainingConfig(model=gridsize1, neighbor_count=1).neighbor_count == 1  # no constraint


def test_constructor_coerces_and_rejects_types():
    t = TrainingConfig(nphotons=1000, nepochs=3.0, train_data_file=Path("a/b.npz"))
    assert isinstance(t.nphotons, float) and t.nphotons == 1000.0
    assert type(t.nepochs) is int and t.nepochs == 3
    assert t.train_data_file == str(Path("a/b.npz"))
    with pytest.raises(ConfigError, match=r"TrainingConfig\.nepochs: expected an integer"):
        TrainingConfig(nepochs=2.5)
    with pytest.raises(ConfigError, match=r"TrainingConfig\.batch_size"):
        TrainingConfig(batch_size=True)
    # nested model given as a mapping becomes a ModelConfig
    assert TrainingConfig(model={"N": 128}).model == ModelConfig(N=128)


# -------------------------------------------------------------------------------- coercion


def test_parse_bool():
    for word in ("true", "True", " yes ", "1", "on", True):
        assert parse_bool(word) is True
    for word in ("false", "FALSE", "no", "0", "off", False):
        assert parse_bool(word) is False
    with pytest.raises(ConfigError, match="maybe"):
        parse_bool("maybe")
    with pytest.raises(ConfigError, match="probe_mask"):
        parse_bool("2", what="probe_mask")


def test_coerce_value():
    assert coerce_value(ModelConfig, "N", "128") == 128
    assert coerce_value(ModelConfig, "N", 128.0) == 128
    assert coerce_value(ModelConfig, "probe_big", "false") is False
    assert coerce_value(TrainingConfig, "nphotons", "1e9") == 1e9
    assert coerce_value(TrainingConfig, "n_groups", "none") is None
    assert coerce_value(TrainingConfig, "n_groups", "Null") is None
    assert coerce_value(TrainingConfig, "gradient_clip_val", "0.5") == 0.5
    assert coerce_value(ExecutionConfig, "precision", "bf16") == "bf16-mixed"
    with pytest.raises(ConfigError, match=r"TrainingConfig\.nepochs.*'ten'"):
        coerce_value(TrainingConfig, "nepochs", "ten")
    with pytest.raises(ConfigError, match=r"ModelConfig\.probe_big.*'maybe'"):
        coerce_value(ModelConfig, "probe_big", "maybe")
    with pytest.raises(ConfigError, match=r"TrainingConfig\.nepochs.*'none'"):
        coerce_value(TrainingConfig, "nepochs", "none")  # not Optional
    with pytest.raises(ConfigError, match=r"nepochs: expected an integer, found None"):
        coerce_value(TrainingConfig, "nepochs", None)
    with pytest.raises(ConfigError, match="finite"):
        coerce_value(TrainingConfig, "nphotons", "inf")
    with pytest.raises(ConfigError, match=r"ModelConfig\.model_type.*expected a string"):
        coerce_value(ModelConfig, "model_type", 3)
    with pytest.raises(ConfigError, match="did you mean 'gridsize'"):
        coerce_value(ModelConfig, "grid_size", 2)


# ------------------------------------------------------------------------------- from_dict


def test_from_dict_flat_and_nested_model_keys():
    flat = from_dict(TrainingConfig, {"N": 64, "gridsize": 2, "nepochs": 10})
    assert flat == TrainingConfig(model=ModelConfig(N=64, gridsize=2), nepochs=10)
    nested = from_dict(TrainingConfig, {"model": {"N": 128, "probe_mask": "yes"}, "batch_size": 8})
    assert nested.model.N == 128 and nested.model.probe_mask is True and nested.batch_size == 8
    with pytest.raises(ConfigError, match="'N' is given both flat"):
        from_dict(TrainingConfig, {"N": 64, "model": {"N": 128}})


def test_from_dict_unknown_key_message():
    with pytest.raises(ConfigError) as info:
        from_dict(TrainingConfig, {"nepoch": 3, "N": 64}, source="run.yaml")
    msg = str(info.value)
    assert msg.startswith("run.yaml:")
    assert "'nepoch'" in msg and "did you mean 'nepochs'" in msg


def test_from_dict_wrong_type_names_field_and_source():
    with pytest.raises(ConfigError) as info:
        from_dict(TrainingConfig, {"batch_size": "sixteen"}, source="run.yaml")
    msg = str(info.value)
    assert msg.startswith("run.yaml: TrainingConfig.batch_size")
    assert "'sixteen'" in msg and "integer" in msg
    with pytest.raises(ConfigError, match=r"run\.yaml: ModelConfig\.N"):
        from_dict(InferenceConfig, {"model": {"N": [64]}}, source="run.yaml")
    with pytest.raises(ConfigError, match="expected a mapping"):
        from_dict(ExecutionConfig, ["learning_rate", 1])


def test_legacy_keys_are_mapped_with_warning(caplog):
    data = {
        "nimgs_train": 100,
        "object.big": "false",
        "probe.trainable": True,
        "intensity_scale.trainable": False,
        "epochs": 7,
        "train_data_file_path": "train.npz",
        "offset": 4,  # ignored legacy key
    }
    with caplog.at_level(logging.WARNING, logger="ptychopinn.config"):
        t = from_dict(TrainingConfig, data)
    assert t.n_groups == 100 and t.model.object_big is False and t.probe_trainable is True
    assert t.intensity_scale_trainable is False and t.nepochs == 7
    assert t.train_data_file == "train.npz"
    assert "'nimgs_train'" in caplog.text and "'epochs'" in caplog.text
    assert "'offset'" in caplog.text
    i = from_dict(InferenceConfig, {"n_images": 20, "probe.big": False})
    assert i.n_groups == 20 and i.model.probe_big is False
    with pytest.raises(ConfigError, match="'n_images' both set 'n_groups'"):
        from_dict(TrainingConfig, {"n_groups": 5, "n_images": 6})


def test_to_dict_is_plain_and_round_trips():
    t = TrainingConfig(model=ModelConfig(N=128, gridsize=2), nepochs=3, n_groups=None)
    d = to_dict(t)
    assert isinstance(d["model"], dict) and d["model"]["N"] == 128
    assert from_dict(TrainingConfig, d) == t


# ------------------------------------------------------------------------------------ YAML


def test_yaml_round_trip(tmp_path):
    t = TrainingConfig(
        model=ModelConfig(N=128, gridsize=2, amp_activation="swish", probe_scale=2.5),
        train_data_file="data/train.npz",
        nepochs=12,
        nphotons=1e6,
        n_groups=None,
        neighbor_count=7,
        subsample_seed=3,
    )
    path = save_yaml(t, tmp_path / "sub" / "train.yaml")
    assert path.exists()
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    assert load_training_config(path) == t

    i = InferenceConfig(model=ModelConfig(N=32), model_path="m.zip", n_groups=10, debug=True)
    assert load_inference_config(save_yaml(i, tmp_path / "infer.yaml")) == i

    e = ExecutionConfig(precision="bf16-mixed", accumulate_grad_batches=2)
    assert load_execution_config(save_yaml({"execution": e}, tmp_path / "exec.yaml")) == e


def test_flat_yaml(tmp_path):
    path = _write(
        tmp_path,
        """
        N: 64
        gridsize: 2
        nepochs: 10
        nphotons: 1e6          # PyYAML reads this as a string
        n_groups: null
        model_path: model.zip
        learning_rate: 1e-4
        debug: yes
        """,
    )
    t = load_training_config(path)
    assert t == TrainingConfig(
        model=ModelConfig(N=64, gridsize=2),
        nepochs=10,
        nphotons=1e6,
        n_groups=None,
        learning_rate=1e-4,
    )
    i = load_inference_config(path)
    assert i.model.gridsize == 2 and i.model_path == "model.zip" and i.debug is True
    assert i.n_groups is None
    assert load_execution_config(path) == ExecutionConfig()


def test_optimiser_settings_of_old_configs_move_to_training(tmp_path, caplog):
    """0.1.0 kept the optimiser under execution: such YAML still loads, with a warning."""
    path = _write(
        tmp_path,
        """
        training:
          nepochs: 3
        execution:
          accelerator: cpu
          learning_rate: 2e-4
          scheduler: step
          gradient_clip_val: 1.0
        """,
    )
    with caplog.at_level("WARNING"):
        t = load_training_config(path)
    assert (t.learning_rate, t.scheduler, t.gradient_clip_val) == (2e-4, "step", 1.0)
    assert load_execution_config(path) == ExecutionConfig(accelerator="cpu")
    assert "learning_rate, scheduler, gradient_clip_val under execution is deprecated" in (
        caplog.text
    )
    clash = _write(
        tmp_path, "training:\n  learning_rate: 1e-3\nexecution:\n  learning_rate: 1e-4\n", "c.yaml"
    )
    with pytest.raises(ConfigError, match=r"'learning_rate' is given under training"):
        load_training_config(clash)


def test_sectioned_yaml(tmp_path):
    path = _write(
        tmp_path,
        """
        model:
          N: 128
          object_big: false
        training:
          nepochs: 5
          n_groups: 64
          output_dir: out/train
        inference:
          n_groups: 16
          model:
            N: 64
        execution:
          accelerator: cpu
          precision: 16
        output_dir: shared_out
        """,
    )
    sections = load_config_file(path)
    assert set(sections) == {"model", "training", "inference", "execution"}
    assert sections["model"] == {"N": 128, "object_big": False}
    t = load_training_config(path)
    assert t.model == ModelConfig(N=128, object_big=False)
    assert (t.nepochs, t.n_groups, t.output_dir) == (5, 64, "out/train")
    i = load_inference_config(path)
    assert i.model == ModelConfig(N=64, object_big=False)  # section-specific model key wins
    assert (i.n_groups, i.output_dir) == (16, "shared_out")
    e = load_execution_config(path)
    assert e.accelerator == "cpu" and e.precision == "16-mixed"


def test_overrides_take_precedence(tmp_path):
    path = _write(tmp_path, "model:\n  N: 128\ntraining:\n  nepochs: 5\n  batch_size: 8\n")
    t = load_training_config(path, {"nepochs": "20", "gridsize": 2})
    assert (t.nepochs, t.batch_size, t.model.N, t.model.gridsize) == (20, 8, 128, 2)
    t2 = load_training_config(path, {"model": {"N": 256}})
    assert t2.model.N == 256 and t2.nepochs == 5
    assert load_training_config(None, {"nepochs": 2}) == TrainingConfig(nepochs=2)
    with pytest.raises(ConfigError, match=r"overrides.*'nepochz'.*did you mean 'nepochs'"):
        load_training_config(path, {"nepochz": 1})


def test_yaml_unknown_key_in_file_and_section(tmp_path):
    path = _write(tmp_path, "nepochs: 3\nlearnig_rate: 0.1\n")
    with pytest.raises(ConfigError) as info:
        load_training_config(path)
    msg = str(info.value)
    assert str(path) in msg and "'learnig_rate'" in msg and "did you mean 'learning_rate'" in msg
    path = _write(tmp_path, "execution:\n  acelerator: cpu\n", "b.yaml")
    with pytest.raises(ConfigError, match=r"\[execution\].*'acelerator'.*'accelerator'"):
        load_training_config(path)


def test_yaml_bad_value_names_file_and_field(tmp_path):
    path = _write(tmp_path, "training:\n  nepochs: ten\n")
    with pytest.raises(ConfigError, match=r"cfg\.yaml: TrainingConfig\.nepochs.*'ten'"):
        load_training_config(path)
    path = _write(tmp_path, "model:\n  N: 100\n", "n.yaml")
    with pytest.raises(ConfigError, match=r"n\.yaml.*ModelConfig\.N.*100"):
        load_inference_config(path)


def test_load_yaml_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_yaml(tmp_path / "missing.yaml")
    bad = _write(tmp_path, "N: 64\ngridsize: [1, 2\nnepochs: 3\n", "bad.yaml")
    with pytest.raises(ConfigError, match=r"bad\.yaml: invalid YAML at line \d+"):
        load_yaml(bad)
    lst = _write(tmp_path, "- 1\n- 2\n", "list.yaml")
    with pytest.raises(ConfigError, match="expected a mapping.*found list"):
        load_yaml(lst)
    assert load_yaml(_write(tmp_path, "", "empty.yaml")) == {}
    sec = _write(tmp_path, "training: 5\n", "sec.yaml")
    with pytest.raises(ConfigError, match="section 'training': expected a mapping"):
        load_config_file(sec)


def test_a_key_given_twice_is_refused_with_both_lines(tmp_path):
    dup = _write(tmp_path, "training:\n  nepochs: 5\n  batch_size: 8\n  nepochs: 7\n", "d.yaml")
    with pytest.raises(
        ConfigError, match=r"d\.yaml: invalid YAML at line 4.*'nepochs' given twice.*line 2"
    ):
        load_yaml(dup)
    # The same key in two sections, and a merge key overridden, are not duplicates.
    ok = "training:\n  seed: 1\nexecution:\n  seed: 2\nb: &b {x: 1, y: 2}\nt:\n  <<: *b\n  x: 5\n"
    data = load_yaml(_write(tmp_path, ok, "ok.yaml"))
    assert data["t"] == {"x": 5, "y": 2} and data["execution"] == {"seed": 2}


def test_save_yaml_overwrites_atomically(tmp_path):
    path = tmp_path / "c.yaml"
    save_yaml(TrainingConfig(nepochs=1), path)
    save_yaml(TrainingConfig(nepochs=2), path)
    assert load_training_config(path).nepochs == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]


# ---------------------------------------------------------------------------------- legacy


def test_update_legacy_dict():
    t = TrainingConfig(
        model=ModelConfig(N=128, gridsize=2, object_big=False, probe_mask=True),
        n_groups=256,
        probe_trainable=True,
        mae_weight=0.5,
        train_data_file="x.npz",
    )
    d = {"offset": 4}
    update_legacy_dict(d, t)
    assert d["N"] == 128 and d["gridsize"] == 2 and d["nepochs"] == 30
    assert d["object.big"] is False and d["object_big"] is False and d["probe.big"] is True
    assert d["probe.mask"] is True and d["probe.trainable"] is True
    assert d["intensity_scale.trainable"] is True
    assert d["n_groups"] == d["n_images"] == d["nimgs_train"] == 256
    assert d["mae_weight"] == 0.5 and d["nll_weight"] == 1.0 and d["model_type"] == "pinn"
    assert d["train_data_file_path"] == "x.npz" and d["offset"] == 4
    d2: dict = {"n_images": 512}
    update_legacy_dict(d2, InferenceConfig(n_groups=None))
    assert d2["n_images"] is None and d2["nimgs_test"] is None and "nimgs_train" not in d2


# ----------------------------------------------------------------------------------- misc


def test_configs_are_picklable():
    for cfg in (
        ModelConfig(N=32),
        TrainingConfig(nepochs=3),
        InferenceConfig(debug=True),
        ExecutionConfig(precision="bf16-mixed"),
    ):
        assert pickle.loads(pickle.dumps(cfg)) == cfg


def test_module_imports_without_torch():
    code = "import ptychopinn.config, sys; assert 'torch' not in sys.modules"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
