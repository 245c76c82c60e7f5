"""The ``ptycho`` and ``ptycho_torch`` compatibility packages (what Ptychodus 1.7.0 calls)."""

from __future__ import annotations

import pickle
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import ptycho.loader
import ptycho.params
import ptycho.probe
import ptycho.tf_helper
from ptycho import model_manager
from ptycho.config import config as pcfg
from ptycho.model_manager import InferenceModel
from ptycho.raw_data import RawData
from ptycho.workflows.components import (
    load_inference_bundle,
    resolve_training_config,
    run_cdi_example,
    save_outputs,
)
from ptycho_torch import config_params as tcp
from ptycho_torch.api.base_api import (
    ConfigManager,
    DataloaderFormats,
    InferenceEngine,
    PtychoDataLoader,
    PtychoModel,
    Trainer,
)
from ptycho_torch.lightning_utils import find_best_checkpoint
from ptycho_torch.model import PtychoPINN_Lightning
from ptycho_torch.translate import (
    Configs,
    UnsupportedOptionWarning,
    core_training_config,
    gridsize_of,
    resolve_device,
    unsupported_options,
)
from ptychopinn.bundle import save_model
from ptychopinn.config import ModelConfig as CoreModelConfig
from ptychopinn.config import TrainingConfig as CoreTrainingConfig
from ptychopinn.data.npz import save_npz
from ptychopinn.data.simulate import extract_patches_exact
from ptychopinn.errors import ArchiveError, ConfigError, DataValidationError
from ptychopinn.model.pinn import PtychoPINN
from ptychopinn.physics.patches import stitch_patches


@pytest.fixture(autouse=True)
def _clean_params():
    """ptycho.params.cfg is global legacy state: start every test from an empty dict."""
    saved = dict(ptycho.params.cfg)
    ptycho.params.cfg.clear()
    yield
    ptycho.params.cfg.clear()
    ptycho.params.cfg.update(saved)


def _counts(data) -> np.ndarray:
    return np.rint(np.square(data.diffraction, dtype=np.float64)).astype(np.uint32)


def _raw(data, probe=None) -> RawData:
    return RawData.from_coords_without_pc(
        xcoords=data.xcoords,
        ycoords=data.ycoords,
        diff3d=_counts(data),
        probeGuess=data.probe if probe is None else probe,
        scan_index=np.zeros(data.n_positions, dtype=int),
        objectGuess=data.object,
    )


def _ptychodus_torch_configs(**overrides):
    """The five configs exactly as Ptychodus 1.7.0 builds them from its default settings."""
    data = tcp.DataConfig(
        N=128, C=4, normalize="Batch", neighbor_function="Nearest", scan_pattern="Isotropic",
        probe_normalize=True, x_bounds=(0.1, 0.9), y_bounds=(0.1, 0.9),
        min_neighbor_distance=0.0, max_neighbor_distance=3.0, K_quadrant=30, n_subsample=7,
        probe_scale=4.0, K=6, grid_size=(2, 2), probe_ramp_removal=False,
        data_scaling="Parseval", phase_subtraction=True,
    )  # fmt: skip
    model = tcp.ModelConfig(
        mode="Unsupervised", object_big=True, probe_big=True, loss_function="Poisson",
        amp_activation="silu", cbam_encoder=True, decoder_last_amp_channels=4,
        use_shared_decoder=False, intensity_scale_trainable=False, intensity_scale=10000.0,
        max_position_jitter=10, num_datasets=1, C_model=4, C_forward=4, amp_loss=None,
        phase_loss=None, amp_loss_coeff=1.0, phase_loss_coeff=1.0, n_filters_scale=2,
        probe_mask=None, eca_decoder=False, batch_norm=False, edge_pad=10,
        decoder_last_c_outer_fraction=0.125, cbam_bottleneck=False, cbam_decoder=False,
        spatial_decoder=False, decoder_spatial_kernel=7, eca_encoder=False, offset=6,
        probe_reference_coeff=0.0, amplitude_variance_loss=False, amplitude_variance_coeff=0.01,
    )  # fmt: skip
    training = tcp.TrainingConfig(
        epochs=50, batch_size=16, learning_rate=1e-3, n_devices=1, num_workers=4,
        accum_steps=1, epochs_fine_tune=0, fine_tune_gamma=0.1, gradient_clip_val=None,
        nll=True, device="cuda", strategy="ddp_spawn", framework="Lightning",
        orchestrator="Lightning", scheduler="Default", warmup_epochs=0, min_lr_ratio=0.1,
        notes="", model_name="PtychoPINNv2", enable_staged_finetuning=False,
        finetune_stage1_epochs=7, finetune_stage2_epochs=7, finetune_stage3_epochs=5,
        finetune_stage1_lr_decoder=0.1, finetune_stage2_lr_encoder_top=0.01,
        finetune_stage2_lr_decoder=0.05, finetune_stage2_lr_phase_head=0.1,
        finetune_stage3_lr_encoder_bottom=0.005, finetune_stage3_lr_encoder_top=0.01,
        finetune_stage3_lr_decoder=0.02, finetune_stage3_lr_phase_head=0.05,
        finetune_skip_stage3=True, finetune_early_stop_patience=3, finetune_val_split=0.05,
    )  # fmt: skip
    inference = tcp.InferenceConfig(
        batch_size=1000, middle_trim=32, experiment_number=0, patch_weighting="probe",
        pad_eval=True, window=20,
    )  # fmt: skip
    configs = {"data": data, "model": model, "training": training, "inference": inference}
    for section, values in overrides.items():
        tcp.update_existing_config(configs[section], values)
    return configs


# ----------------------------------------------------------------------------- imports/configs

_BLOCK_TORCH = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split('.')[0] in ('torch', 'lightning', 'tensorflow'):
            raise ImportError('blocked ' + name)
sys.meta_path.insert(0, Block())
from ptycho.config.config import ModelConfig, TrainingConfig, InferenceConfig, update_legacy_dict
import ptycho_torch.config_params, ptycho.params
assert not any(m.split('.')[0] in ('torch', 'lightning') for m in sys.modules)
print('ok')
"""


def test_parent_side_config_modules_import_without_torch():
    out = subprocess.run(
        [sys.executable, "-c", _BLOCK_TORCH], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_ptycho_configs_as_ptychodus_builds_them():
    model = pcfg.ModelConfig(
        N=0, gridsize=1, n_filters_scale=2, model_type="pinn", amp_activation="swish",
        object_big=True, probe_big=True, probe_mask=False, pad_object=True, probe_scale=4.0,
        gaussian_smoothing_sigma=0.0,
    )  # fmt: skip
    training = pcfg.TrainingConfig(
        model=model, train_data_file=Path(), test_data_file=None, batch_size=16, nepochs=50,
        mae_weight=0.0, nll_weight=1.0, realspace_mae_weight=0.0, realspace_weight=0.0,
        nphotons=1e6, positions_provided=True, probe_trainable=False,
        intensity_scale_trainable=True, output_dir=Path(),
    )  # fmt: skip
    inference = pcfg.InferenceConfig(
        model=pcfg.ModelConfig(N=64), model_path=Path(), test_data_file=Path(), debug=True,
        output_dir=Path(),
    )  # fmt: skip
    for cfg in (training, inference):
        assert pickle.loads(pickle.dumps(cfg)) == cfg
    assert training.n_groups is None  # Ptychodus users train on the whole scan
    # Settings Ptychodus does not send are the recipe's (batch normalisation, mixing).
    recipe = CoreModelConfig()
    assert (model.normalization, model.global_mixing) == (
        recipe.normalization,
        recipe.global_mixing,
    )
    pcfg.update_legacy_dict(ptycho.params.cfg, training)
    assert ptycho.params.get("nepochs") == 50
    assert ptycho.params.get("probe.big") is True
    assert ptycho.params.get("N") == 0
    with pytest.raises(KeyError, match="intensity_scale"):
        ptycho.params.get("intensity_scale")
    with pytest.raises(ConfigError, match="ModelConfig.N"):
        pcfg.ModelConfig(N=48)


def test_torch_configs_accept_every_ptychodus_field_and_pickle():
    configs = _ptychodus_torch_configs()
    for cfg in [*configs.values(), tcp.DatagenConfig()]:
        assert pickle.loads(pickle.dumps(cfg)) == cfg
    restored = tcp.config_from_dict(tcp.DataConfig, {**vars(configs["data"]), "new_key": 1})
    assert restored == configs["data"]
    with pytest.raises(ConfigError, match="DataConfig.neighbor_function"):
        tcp.DataConfig(neighbor_function="Farthest")
    with pytest.raises(ConfigError, match="TrainingConfig.device"):
        tcp.TrainingConfig(device="tpu")
    with pytest.raises(ConfigError, match="DataConfig.C"):
        gridsize_of(tcp.DataConfig(C=3))


def test_torch_configs_are_checked_by_the_core_rules():
    """The same coercion as the core configs: lossless conversions pass, the rest is one
    line naming the field."""
    t = tcp.TrainingConfig(epochs=5.0, output_dir=Path("run"), training_directories=[Path("a")])
    assert (t.epochs, t.output_dir, t.training_directories) == (5, "run", ["a"])
    assert tcp.ModelConfig(amp_loss="none").amp_loss is None
    assert tcp.DataConfig(grid_size=[3, 3]).grid_size == (3, 3)
    for cls, kw, expected in [
        (tcp.ModelConfig, {"batch_norm": "maybe"}, r"ModelConfig\.batch_norm: expected a boolean"),
        (tcp.DataConfig, {"x_bounds": (0.1,)}, r"DataConfig\.x_bounds: expected a sequence"),
        (tcp.TrainingConfig, {"learning_rate": 0}, r"learning_rate: expected a value > 0"),
        (tcp.TrainingConfig, {"epochs": 2.5}, r"TrainingConfig\.epochs: expected an integer"),
        (tcp.InferenceConfig, {"patch_weighting": "max"}, r"patch_weighting: expected one of"),
    ]:
        with pytest.raises(ConfigError, match=expected):
            cls(**kw)


def test_unimplemented_torch_options_are_listed_not_fatal():
    cfg = Configs(**_ptychodus_torch_configs())
    found = unsupported_options(cfg)
    assert any(f.startswith("cbam_encoder=True") for f in found)
    assert any(f.startswith("x_bounds") for f in found)
    assert not any(f.startswith("eca_encoder") for f in found)
    assert unsupported_options(cfg, inference=True) == [
        "middle_trim=32 (patches are stitched whole)"
    ]
    default = Configs(
        tcp.DataConfig(grid_size=(2, 2), x_bounds=(0, 1), y_bounds=(0, 1)),
        tcp.ModelConfig(),
        tcp.TrainingConfig(),
        tcp.InferenceConfig(),
    )
    # Ptychodus' default batch_norm=False is reported: the engine trains the recipe's network.
    assert [f.split(" ")[0] for f in unsupported_options(default)] == [
        f"amp_activation={tcp.ModelConfig().amp_activation!r}",
        "batch_norm=False",
    ]
    core = core_training_config(cfg)
    assert (core.model.gridsize, core.groups_per_position, core.neighbor_count) == (2, 7, 7)
    assert core.n_groups is None  # the count follows each scan's positions
    # A signed amplitude activation (Ptychodus' default silu) is reported, sigmoid trained.
    assert any(f.startswith("amp_activation='silu'") for f in found)
    assert core.model.amp_activation == "sigmoid" and core.nll_weight == 1.0


def test_ptychodus_torch_defaults_train_the_recipe():
    """Ptychodus' defaults (no batch norm, scheduler "Default", no warm-up) -> the recipe."""
    cfg = Configs(
        tcp.DataConfig(grid_size=(2, 2), x_bounds=(0, 1), y_bounds=(0, 1)),
        tcp.ModelConfig(),
        tcp.TrainingConfig(),
        tcp.InferenceConfig(),
    )
    assert core_training_config(cfg).model.normalization == CoreModelConfig().normalization
    ex = core_training_config(cfg)
    recipe = CoreTrainingConfig()
    assert (ex.scheduler, ex.warmup_epochs, ex.min_lr_ratio) == (
        recipe.scheduler,
        recipe.warmup_epochs,
        recipe.min_lr_ratio,
    )
    cosine = Configs(cfg.data, cfg.model, tcp.TrainingConfig(scheduler="Cosine", warmup_epochs=2),
                     cfg.inference)  # fmt: skip
    ex = core_training_config(cosine)
    assert (ex.scheduler, ex.warmup_epochs, ex.min_lr_ratio) == ("cosine", 2, 0.1)


def test_core_warnings_reach_the_log(caplog):
    """Ptychodus forwards the child's log records only: core warnings must be logged too."""
    from ptychopinn.warning_log import forward_warnings_to_log

    # pytest records warnings instead of showing them; show them here, as a host would.
    with warnings.catch_warnings(), caplog.at_level("WARNING"):
        warnings.simplefilter("always")
        forward_warnings_to_log()
        forward_warnings_to_log()  # idempotent: one record per warning
        warnings.warn("fewer groups than asked for", UserWarning, stacklevel=1)
    assert sum("fewer groups" in r.getMessage() for r in caplog.records) == 1
    assert any("fewer groups than asked for" in r.getMessage() for r in caplog.records)


def test_cuda_request_without_gpu_falls_back_to_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(RuntimeWarning, match="CUDA is not available"):
        assert resolve_device("cuda") == "cpu"
    assert resolve_device("cpu") == "cpu"


# ----------------------------------------------------------------------------- ptycho data path


def test_rawdata_from_counts_and_multimode_probe(tiny_scan):
    d = tiny_scan
    probe_modes = np.stack([d.probe, 0.2 * d.probe])
    with pytest.warns(UserWarning, match="2 probe modes"):
        raw = _raw(d, probe=probe_modes)
    np.testing.assert_allclose(raw.diff3d, d.diffraction, atol=0.51)
    np.testing.assert_array_equal(raw.probeGuess, d.probe)
    ptycho.probe.set_probe_guess(None, raw.probeGuess)
    assert ptycho.probe.get_probe().shape == (d.N, d.N)
    with pytest.raises(DataValidationError, match="scan_index"):
        RawData.from_coords_without_pc(d.xcoords, d.ycoords, _counts(d), d.probe, np.zeros(3))
    with pytest.raises(DataValidationError, match="xcoords"):
        RawData.from_coords_without_pc(d.xcoords[:-1], d.ycoords, _counts(d), d.probe, None)


@pytest.mark.parametrize("gridsize", [1, 2])
def test_grouping_covers_every_position(tiny_scan, gridsize):
    d = tiny_scan
    raw = _raw(d)
    ds = raw.generate_grouped_data(d.N, K=7, nsamples=1, gridsize=gridsize)
    c = gridsize**2
    m = d.n_positions
    assert ds["diffraction"].shape == (m, d.N, d.N, c)
    assert sorted(ds["nn_indices"][:, 0]) == list(range(m))
    assert ds["coords_relative"].shape == (m, 1, 2, c)
    np.testing.assert_allclose(
        ds["coords_nn"], ds["coords_offsets"] + ds["coords_relative"], atol=1e-9
    )
    container = ptycho.loader.load(lambda: ds, raw.probeGuess, which=None, create_split=False)
    assert container.X.shape == (m, d.N, d.N, c)
    assert container.global_offsets.canvas_shape == d.object.shape
    more = raw.generate_grouped_data(d.N, K=7, nsamples=2 * m, gridsize=gridsize)
    assert more["nn_indices"].shape[0] == (2 * m if gridsize > 1 else m)
    with pytest.raises(DataValidationError, match="N=64"):
        raw.generate_grouped_data(64, K=7, nsamples=1, gridsize=gridsize)
    with pytest.raises(ConfigError, match="create_split"):
        ptycho.loader.load(lambda: ds, raw.probeGuess, which="train", create_split=True)


@pytest.mark.parametrize("gridsize", [1, 2])
def test_reassemble_position_matches_core_stitcher(tiny_scan, gridsize):
    d = tiny_scan
    raw = _raw(d)
    ds = raw.generate_grouped_data(d.N, K=7, nsamples=1, gridsize=gridsize)
    c = ptycho.loader.load(lambda: ds, raw.probeGuess, which=None, create_split=False)
    pos = np.asarray(c.global_offsets)[:, 0]  # (G, 2, C)
    g, _, ch = pos.shape
    patches = extract_patches_exact(
        d.object, pos[:, 0].reshape(-1), pos[:, 1].reshape(-1), d.N
    ).reshape(g, ch, d.N, d.N)
    image = ptycho.tf_helper.reassemble_position(
        np.moveaxis(patches, 1, -1), c.global_offsets, M=20
    )
    assert image.shape == (*d.object.shape, 1)
    window = torch.zeros(d.N, d.N)
    window[6:26, 6:26] = 1
    core, weight = stitch_patches(
        torch.from_numpy(patches.reshape(-1, d.N, d.N)),
        torch.from_numpy(np.transpose(pos, (0, 2, 1)).reshape(-1, 2)),
        d.object.shape,
        weights=window,
    )
    np.testing.assert_allclose(image[..., 0], core.numpy(), atol=1e-5)
    covered = weight.numpy() > 0.5 * float(weight.max())
    rel = np.linalg.norm((image[..., 0] - d.object)[covered]) / np.linalg.norm(d.object[covered])
    assert rel < 0.02
    if gridsize == 2:
        with pytest.raises(DataValidationError, match="C=4"):
            ptycho.tf_helper.reassemble_position(
                np.moveaxis(patches, 1, -1), ds["coords_offsets"], M=20
            )


@pytest.fixture(scope="module")
def tiny_model():
    """A network that reads a group's patterns together, so it needs groups of its C."""
    cfg = CoreModelConfig(N=32, gridsize=2, n_filters_scale=1, per_pattern_network=False)
    torch.manual_seed(0)
    return PtychoPINN(cfg, np.ones((32, 32), np.complex64), 0.01)


def test_predict_equals_core_and_checks_shapes(tiny_scan, tiny_model):
    d = tiny_scan
    raw = _raw(d)
    ds = raw.generate_grouped_data(d.N, K=7, nsamples=1, gridsize=2)
    c = ptycho.loader.load(lambda: ds, raw.probeGuess, which=None, create_split=False)
    wrapped = InferenceModel(tiny_model)
    s = wrapped.intensity_scale
    out = wrapped.predict([c.X * s, c.local_offsets], batch_size=7)
    assert out.shape == c.X.shape and out.dtype == np.complex64
    with torch.no_grad():
        ref = tiny_model.predict_patches(
            torch.from_numpy(np.moveaxis(c.X[:5], -1, 1)),
            torch.from_numpy(np.transpose(c.local_offsets[:5, 0], (0, 2, 1)).astype(np.float32)),
        )
    np.testing.assert_allclose(out[:5], np.moveaxis(ref.numpy(), 1, -1), rtol=1e-4, atol=1e-5)
    one = raw.generate_grouped_data(d.N, K=7, nsamples=1, gridsize=1)
    with pytest.raises(DataValidationError, match="gridsize=2"):
        wrapped.predict([one["diffraction"] * s, one["coords_relative"]])
    with pytest.raises(DataValidationError, match="N=32"):
        wrapped.predict([np.zeros((2, 64, 64, 4)), np.zeros((2, 1, 2, 4))])


def test_gridsize_one_trains_one_pattern_per_pass_on_overlap_groups():
    """Ptychodus' PtychoPINN default (gridsize 1) trains a per-pattern network on 2x2
    overlap groups; other settings are trained as given."""
    grouped_net = pcfg.ModelConfig(N=0, gridsize=1, n_filters_scale=2, per_pattern_network=False)
    core = resolve_training_config(pcfg.TrainingConfig(model=grouped_net), 64)
    assert (core.model.N, core.model.gridsize, core.model.per_pattern_network) == (64, 2, True)
    assert core.neighbor_count >= 4 and core.model.n_filters_scale == 2
    supervised = pcfg.ModelConfig(N=32, gridsize=1, model_type="supervised")
    assert resolve_training_config(pcfg.TrainingConfig(model=supervised), 32).model.gridsize == 1
    plain = pcfg.ModelConfig(N=32, per_pattern_network=False)
    grouped = resolve_training_config(pcfg.TrainingConfig(model=plain), 32)
    assert (grouped.model.gridsize, grouped.model.per_pattern_network) == (2, False)


def test_per_pattern_model_predicts_any_grouping(tiny_scan):
    """A per-pattern model takes Ptychodus' gridsize-1 grouping: each patch is the network's
    prediction for its pattern alone."""
    cfg = CoreModelConfig(N=32, gridsize=2, n_filters_scale=1, per_pattern_network=True)
    torch.manual_seed(0)
    model = PtychoPINN(cfg, np.ones((32, 32), np.complex64), 0.01).eval()
    raw = _raw(tiny_scan)
    one = raw.generate_grouped_data(tiny_scan.N, K=7, nsamples=1, gridsize=1)
    wrapped = InferenceModel(model)
    x = one["diffraction"] * wrapped.intensity_scale
    out = wrapped.predict([x, one["coords_relative"]], batch_size=8)
    assert out.shape == x.shape
    with torch.no_grad():
        ref = model.predict_patches(torch.from_numpy(np.moveaxis(one["diffraction"][:3], -1, 1)))
    np.testing.assert_allclose(out[:3], np.moveaxis(ref.numpy(), 1, -1), rtol=1e-4, atol=1e-5)


def test_inference_bundle_layouts(tmp_path, tiny_model):
    from ptychopinn.config import TrainingConfig

    training = TrainingConfig(model=tiny_model.config, output_dir=str(tmp_path))
    save_model(tiny_model, tmp_path / "bundle", training_config=training)
    # Ptychodus' "model.zip" is a copy of wts.h5.zip, unpacked into a directory.
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(tmp_path / "bundle" / "wts.h5.zip") as zf:
        zf.extractall(unpacked)
    for directory in (tmp_path / "bundle", unpacked):
        model, params = load_inference_bundle(directory, device="cpu")
        assert model.gridsize == 2 and model.N == 32
        assert params["intensity_scale"] == pytest.approx(0.01, rel=1e-5)
        assert ptycho.params.get("intensity_scale") == pytest.approx(model.intensity_scale)
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "notes.txt").write_text("no model here")
    with pytest.raises(ArchiveError, match="expected a model archive"):
        load_inference_bundle(stray, device="cpu")


def test_model_manager_save_needs_a_trained_model(monkeypatch, tmp_path):
    monkeypatch.setattr(model_manager, "_session", {})
    with pytest.raises(RuntimeError, match="no model has been trained"):
        model_manager.save(tmp_path)


def test_run_cdi_example_writes_nothing_to_the_working_dir(tiny_scan, tmp_path, monkeypatch):
    d = tiny_scan
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    save_npz(d, tmp_path / "train_data.npz", as_counts=True)
    train = RawData.from_file(tmp_path / "train_data.npz")
    config = pcfg.TrainingConfig(
        model=pcfg.ModelConfig(N=0, n_filters_scale=1), nepochs=1, batch_size=16,
        output_dir=Path(),
    )  # fmt: skip
    config.model.N = train.diff3d.shape[-1]
    pcfg.update_legacy_dict(ptycho.params.cfg, config)
    amp, phase, results = run_cdi_example(train, None, config)
    assert amp is None and phase is None
    assert len(results["history"]["train_loss"]) == 1
    assert list(work.iterdir()) == []
    out = tmp_path / "out"
    assert model_manager.save(out) == out / "wts.h5.zip"
    written = save_outputs(amp, phase, results, str(out))
    assert [p.name for p in written] == ["history.json"]
    model, _ = load_inference_bundle(out, device="cpu")
    assert model.intensity_scale == pytest.approx(ptycho.params.get("intensity_scale"))


# ----------------------------------------------------------------------------- ptycho_torch path


def test_torch_train_checkpoint_and_reconstruct(tiny_scan, tmp_path, caplog):
    d = tiny_scan
    data_dir = tmp_path / "in"
    save_npz(d, data_dir / "train_data.npz", as_counts=True)
    cfgs = _ptychodus_torch_configs(
        data={"C": 1, "grid_size": (1, 1)},
        model={"n_filters_scale": 1, "C_model": 1, "C_forward": 1},
        training={"epochs": 1, "num_workers": 0},
    )
    cm = ConfigManager(
        cfgs["data"], cfgs["model"], cfgs["training"], cfgs["inference"], tcp.DatagenConfig()
    )
    with pytest.warns(UserWarning, match="using N=32"):
        loader = PtychoDataLoader(
            data_dir=data_dir,
            config_manager=cm,
            data_format=DataloaderFormats("lightning_only_module"),
            output_dir=tmp_path / "out",
        )
    assert cm.data_config.N == 32  # adopted from the data
    model = PtychoModel._new_model(model=PtychoPINN_Lightning, config_manager=cm)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = Trainer._from_lightning(
            model=model, dataloader=loader, orchestration="lightning", config_manager=cm
        )
    assert any(issubclass(w.category, UnsupportedOptionWarning) for w in caught)
    assert (model.model.loss_name, model.model.val_loss_name) == ("train_loss", "val_loss")
    trainer.train(orchestration="lightning", experiment_name="")
    ckpt = find_best_checkpoint(Path(loader.output_dir))
    assert ckpt is not None and ckpt.parent.parent == Path(loader.output_dir)
    torch.load(ckpt, map_location="cpu", weights_only=True)  # safe to load

    other = tmp_path / "other_layout.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    conv = next(k for k, v in state["state_dict"].items() if v.ndim == 4)
    state["state_dict"][conv] = torch.zeros(1, 1, 3, 3)
    torch.save(state, other)
    with pytest.raises(ArchiveError, match=r"other_layout\.ckpt: weights do not fit"):
        PtychoModel.from_checkpoint(other)

    configs = PtychoModel._extract_configs_from_checkpoint(str(ckpt))
    data_cfg, model_cfg, training_cfg, inference_cfg = configs
    assert data_cfg.N == 32 and model_cfg.mode == "Unsupervised" and training_cfg.epochs == 1
    loaded = PtychoModel(model_cfg, data_cfg, training_cfg, inference_cfg)
    loaded.model = PtychoPINN_Lightning.load_from_checkpoint(
        ckpt, model_config=model_cfg, data_config=data_cfg,
        training_config=training_cfg, inference_config=inference_cfg,
    )  # fmt: skip
    manager = ConfigManager.from_loaded_model(loaded)
    manager.validate_arch_compatibility(loaded)
    for key, value in model.model.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[key], value)
    with pytest.raises(ConfigError, match="fixed by the loaded model"):
        manager.update(data_config={"N": 64})

    engine = InferenceEngine(config_manager=manager, ptycho_model=loaded)
    infer_loader = PtychoDataLoader.from_np(
        diff_patterns=_counts(d).astype(np.float32),
        probe=d.probe[None],
        positions=np.column_stack([d.ycoords, d.xcoords]),
        config_manager=manager,
    )
    with caplog.at_level("INFO", logger="ptycho_torch.api.base_api"):
        obj = np.asarray(engine.predict_and_stitch(infer_loader))
    # Checked against the measured patterns, as ptycho_inference does.
    assert any("of the measured signal unexplained" in r.getMessage() for r in caplog.records)
    assert obj.shape == d.object.shape  # the scan is centred on the object, as in Ptychodus
    assert np.all(np.isfinite(obj)) and np.abs(obj).max() > 0
    assert engine.predict(infer_loader).shape == (d.n_positions, d.N, d.N)
    with pytest.raises(DataValidationError, match="trained for N=32"):
        PtychoDataLoader.from_np(
            np.ones((3, 64, 64)), np.ones((64, 64), complex), np.zeros((3, 2)) + 40,
            config_manager=manager,
        )  # fmt: skip


def test_bad_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(ArchiveError, match="not found"):
        PtychoModel._extract_configs_from_checkpoint(tmp_path / "missing.ckpt")
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ArchiveError, match="loaded safely"):
        PtychoModel._extract_configs_from_checkpoint(bad)
    assert find_best_checkpoint(tmp_path) is None


def test_training_data_directory_must_be_unambiguous(tiny_scan, tmp_path):
    save_npz(tiny_scan, tmp_path / "a.npz")
    save_npz(tiny_scan, tmp_path / "b.npz")
    with pytest.raises(DataValidationError, match="train_data.npz"):
        PtychoDataLoader(data_dir=tmp_path, config_manager=ConfigManager())


def test_scan_canvas_for_positions_off_the_object_grid():
    """Ptychodus' canvas: patches left of pixel 0 warn; NaN positions are a clear error."""
    from ptycho._adapt import scan_canvas_shape

    x = np.array([20.0, 40.0, 60.0])
    assert scan_canvas_shape(x, x, 32) == (81, 81)  # centred on the scan's mid-range
    with pytest.warns(UserWarning, match=r"\(x\): patches reach 25.5 px below pixel 0"):
        scan_canvas_shape(x - 30, x, 32)
    with pytest.raises(DataValidationError, match=r"\(y\).*NaN"):
        scan_canvas_shape(x, np.array([1.0, np.nan, 3.0]), 32)
