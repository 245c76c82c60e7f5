"""``ptycho_torch.api.base_api``: config manager, data loader, model, trainer, inference.

Thin adapters over the core workflows, with the classes and methods Ptychodus' PtychoPINN-Torch
reconstructor calls:

- training: ``ConfigManager(...)``, ``PtychoDataLoader(data_dir, config_manager, data_format,
  output_dir)``, ``PtychoModel._new_model(model=PtychoPINN_Lightning, config_manager)``,
  ``Trainer._from_lightning(model, dataloader, orchestration, config_manager)``,
  ``trainer._trainer`` (the Lightning trainer), ``trainer.train(orchestration, experiment_name)``
  and ``dataloader.output_dir`` (the run directory holding ``checkpoints/``);
- inference: ``PtychoModel._extract_configs_from_checkpoint(path)``, ``PtychoModel(...)``,
  ``ConfigManager.from_loaded_model``, ``validate_arch_compatibility``,
  ``PtychoDataLoader.from_np(diff_patterns, probe, positions, config_manager)`` and
  ``InferenceEngine(config_manager, ptycho_model).predict_and_stitch(loader)``.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from ptycho._adapt import scan_canvas_shape, to_ptycho_data, warn
from ptycho_torch.config_params import (
    DataConfig,
    DatagenConfig,
    InferenceConfig,
    ModelConfig,
    TrainingConfig,
    config_from_dict,
    update_existing_config,
)
from ptycho_torch.translate import (
    Configs,
    adopt_pattern_size,
    core_execution_config,
    core_training_config,
    report_unsupported,
    resolve_device,
)
from ptychopinn.data.npz import load_npz
from ptychopinn.data.types import PtychoData
from ptychopinn.errors import ArchiveError, ConfigError, DataValidationError

logger = logging.getLogger(__name__)

__all__ = [
    "ConfigManager",
    "DataloaderFormats",
    "InferenceEngine",
    "Orchestration",
    "PtychoDataLoader",
    "PtychoModel",
    "Trainer",
]

#: Fields that fix a trained network's shape or physics; frozen once a model is loaded.
ARCHITECTURE_FIELDS: dict[str, tuple[str, ...]] = {
    "data_config": ("N", "C"),
    "model_config": (
        "n_filters_scale",
        "amp_activation",
        "object_big",
        "probe_big",
        "pad_object",
        "probe_mask",
        "gaussian_smoothing_sigma",
    ),
}


def _parse(value: Any, cls: type) -> Any:
    """A config object from an object, a dict or None (defaults)."""
    return cls() if value is None else config_from_dict(cls, value, source=cls.__name__)


class ConfigManager:
    """The five configs of one run, shared by the data loader, model, trainer and engine."""

    def __init__(
        self,
        data_config: DataConfig | None = None,
        model_config: ModelConfig | None = None,
        training_config: TrainingConfig | None = None,
        inference_config: InferenceConfig | None = None,
        datagen_config: DatagenConfig | None = None,
    ) -> None:
        self.data_config = _parse(data_config, DataConfig)
        self.model_config = _parse(model_config, ModelConfig)
        self.training_config = _parse(training_config, TrainingConfig)
        self.inference_config = _parse(inference_config, InferenceConfig)
        self.datagen_config = _parse(datagen_config, DatagenConfig)
        self._arch_frozen = False

    @classmethod
    def from_configs(cls, **configs: Any) -> ConfigManager:
        """From config objects or dicts given by keyword (``model_config=...`` etc.)."""
        return cls(**configs)

    @classmethod
    def from_loaded_model(cls, model: PtychoModel) -> ConfigManager:
        """The configs a loaded model was trained with; architecture fields become frozen."""
        lightning = getattr(model, "model", None)
        cfg = getattr(lightning, "torch_configs", None)
        if cfg is None:
            raise ConfigError(
                "ConfigManager.from_loaded_model: expected a PtychoModel holding a loaded "
                "PtychoPINN_Lightning, found none"
            )
        instance = cls(cfg.data, cfg.model, cfg.training, cfg.inference, DatagenConfig())
        instance._arch_frozen = True
        return instance

    @property
    def configs(self) -> Configs:
        return Configs(
            self.data_config, self.model_config, self.training_config, self.inference_config
        )

    def validate_arch_compatibility(self, model: PtychoModel) -> None:
        """Raise ConfigError listing every architecture field that differs from the model's."""
        cfg = model.model.torch_configs
        mismatches = []
        for section, names in ARCHITECTURE_FIELDS.items():
            mine = getattr(self, section)
            theirs = cfg.data if section == "data_config" else cfg.model
            for name in names:
                if getattr(mine, name) != getattr(theirs, name):
                    mismatches.append(
                        f"{section}.{name}: {getattr(mine, name)!r} here, "
                        f"{getattr(theirs, name)!r} in the model"
                    )
        if mismatches:
            raise ConfigError(
                "architecture settings differ from the loaded model: " + "; ".join(mismatches)
            )

    def update(
        self,
        data_config: dict | None = None,
        model_config: dict | None = None,
        training_config: dict | None = None,
        inference_config: dict | None = None,
        datagen_config: dict | None = None,
        strict_frozen: bool | None = None,
    ) -> None:
        """Update fields by name; architecture fields of a loaded model may not change."""
        frozen = self._arch_frozen if strict_frozen is None else strict_frozen
        for section, updates in (
            ("data_config", data_config),
            ("model_config", model_config),
            ("training_config", training_config),
            ("inference_config", inference_config),
            ("datagen_config", datagen_config),
        ):
            if not updates:
                continue
            target = getattr(self, section)
            if frozen:
                locked = [
                    k
                    for k in updates
                    if k in ARCHITECTURE_FIELDS.get(section, ())
                    and updates[k] != getattr(target, k)
                ]
                if locked:
                    raise ConfigError(
                        f"ConfigManager.update: {section} field(s) {locked} are fixed by the "
                        "loaded model's architecture"
                    )
            update_existing_config(target, updates)

    def to_tuple(
        self,
    ) -> tuple[DataConfig, ModelConfig, TrainingConfig, InferenceConfig, DatagenConfig]:
        return (
            self.data_config,
            self.model_config,
            self.training_config,
            self.inference_config,
            self.datagen_config,
        )


class DataloaderFormats(Enum):
    """Data-loader kinds of the original API; all load the data into memory here."""

    LIGHTNING_MODULE = "lightning_module"
    LIGHTNING_ONLY_MODULE = "lightning_only_module"
    TENSORDICT = "tensordict"
    DATALOADER = "pytorch"
    NUMPY = "numpy"


class Orchestration(Enum):
    """Training orchestration: Lightning (CSV logs) or MLflow logging."""

    MLFLOW = "mlflow"
    PYTORCH = "pytorch"
    LIGHTNING = "lightning"


def _training_files(data_dir: Path, training: TrainingConfig) -> tuple[Path, Path | None]:
    """(train file, validation file or None) for a data directory.

    Precedence: ``TrainingConfig.train_data_file``/``test_data_file``; ``train_data.npz`` and
    ``test_data.npz`` (Ptychodus' training-data export names); the only ``.npz`` file.
    """
    if training.train_data_file:
        test = Path(training.test_data_file) if training.test_data_file else None
        return Path(training.train_data_file), test
    if data_dir.is_file():
        return data_dir, None
    if not data_dir.is_dir():
        raise DataValidationError(f"{data_dir}: expected a directory of NPZ files, found none")
    if (data_dir / "train_data.npz").is_file():
        test = data_dir / "test_data.npz"
        return data_dir / "train_data.npz", test if test.is_file() else None
    files = sorted(data_dir.glob("*.npz"))
    if len(files) == 1:
        return files[0], None
    found = [f.name for f in files] or "no .npz file"
    raise DataValidationError(
        f"{data_dir}: expected 'train_data.npz' (optionally with 'test_data.npz' for "
        f"validation) or exactly one .npz file, found {found}"
    )


class PtychoDataLoader:
    """A scan held in memory as the core's PtychoData, plus where a training run writes.

    Attributes: ``dataset`` (training or inference data), ``val_dataset`` (or None),
    ``canvas_shape`` (the object canvas of a reconstruction), ``output_dir`` (the
    ``run_<timestamp>`` directory of a training run, or None), and the configs.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        config_manager: ConfigManager | None = None,
        data_config: DataConfig | dict | None = None,
        model_config: ModelConfig | dict | None = None,
        training_config: TrainingConfig | dict | None = None,
        data_format: DataloaderFormats | str = DataloaderFormats.LIGHTNING_MODULE,
        output_dir: str | os.PathLike[str] | None = None,
        timestamp: str | None = None,
        memory_map_dir: str | None = None,
    ) -> None:
        """Load training data from ``data_dir`` (see :func:`_training_files` for which file)."""
        del memory_map_dir
        self._set_configs(config_manager, data_config, model_config, training_config)
        self.data_format = DataloaderFormats(data_format)
        self.data_dir = Path(data_dir)
        train_file, val_file = _training_files(self.data_dir, self.training_config)
        self.dataset = load_npz(train_file, allow_outside=True)
        self.val_dataset = load_npz(val_file, allow_outside=True) if val_file else None
        self._adopt_size(self.dataset)
        if self.val_dataset is not None and self.val_dataset.N != self.dataset.N:
            raise DataValidationError(
                f"{val_file}: patterns are {self.val_dataset.N}x{self.val_dataset.N} but the "
                f"training patterns ({train_file}) are {self.dataset.N}x{self.dataset.N}"
            )
        self.canvas_shape = self.dataset.canvas_shape()
        self.output_dir = self._run_dir(output_dir, timestamp)
        logger.info(
            "training data %s (%d positions)%s",
            train_file,
            self.dataset.n_positions,
            f", validation data {val_file}" if val_file else "",
        )

    def _set_configs(self, config_manager, data_config, model_config, training_config) -> None:
        if config_manager is None:
            config_manager = ConfigManager(data_config, model_config, training_config)
        self.config_manager = config_manager
        self.data_config = config_manager.data_config
        self.model_config = config_manager.model_config
        self.training_config = config_manager.training_config

    def _adopt_size(self, data: PtychoData) -> None:
        if self.config_manager._arch_frozen and self.data_config.N != data.N:
            raise DataValidationError(
                f"{data.source}: diffraction patterns are {data.N}x{data.N} but the loaded "
                f"model was trained for N={self.data_config.N}"
            )
        adopt_pattern_size(self.data_config, data.N, data.source)

    @staticmethod
    def _run_dir(output_dir: str | os.PathLike[str] | None, timestamp: str | None) -> str | None:
        if output_dir is None:
            return None
        stamp = timestamp or datetime.now().strftime("%Y%m%d_%H%M%S")
        return os.path.join(os.fspath(output_dir), f"run_{stamp}")

    @classmethod
    def from_np(
        cls,
        diff_patterns: Any,
        probe: Any,
        positions: Any,
        config_manager: ConfigManager | None = None,
        data_config: DataConfig | dict | None = None,
        model_config: ModelConfig | dict | None = None,
        training_config: TrainingConfig | dict | None = None,
        scaling_constant: float | None = None,
        output_dir: str | os.PathLike[str] | None = None,
        timestamp: str | None = None,
        canvas_shape: tuple[int, int] | None = None,
    ) -> PtychoDataLoader:
        """In-memory data: patterns (M, N, N) (raw counts or amplitudes), probe (N, N) or
        (modes, N, N), positions (M, 2) as ``[y, x]`` object pixels.

        The reconstruction canvas is ``canvas_shape``, else one centred on the scan (how
        Ptychodus centres its objects), so the result lines up with the input object.
        """
        positions = np.asarray(positions, dtype=np.float64)
        if positions.ndim != 2 or positions.shape[1] != 2:
            raise DataValidationError(
                f"positions: expected an (M, 2) array of [y, x] pixel positions, found shape "
                f"{positions.shape}"
            )
        instance = cls.__new__(cls)
        instance._set_configs(config_manager, data_config, model_config, training_config)
        if scaling_constant is not None:
            warn("from_np: scaling_constant is not used (the model's intensity scale is)")
        instance.data_format = DataloaderFormats.NUMPY
        instance.data_dir = None
        instance.dataset = to_ptycho_data(
            diff_patterns, positions[:, 1], positions[:, 0], probe, source="<from_np>"
        )
        instance.val_dataset = None
        instance._adopt_size(instance.dataset)
        d = instance.dataset
        instance.canvas_shape = canvas_shape or scan_canvas_shape(d.xcoords, d.ycoords, d.N)
        instance.output_dir = cls._run_dir(output_dir, timestamp)
        return instance

    def __len__(self) -> int:
        return self.dataset.n_positions


class PtychoModel:
    """A Lightning module (``.model``) together with the configs it was built with."""

    def __init__(
        self,
        model_config: ModelConfig | dict | None = None,
        data_config: DataConfig | dict | None = None,
        training_config: TrainingConfig | dict | None = None,
        inference_config: InferenceConfig | dict | None = None,
    ) -> None:
        self.model_config = _parse(model_config, ModelConfig)
        self.data_config = _parse(data_config, DataConfig)
        self.training_config = _parse(training_config, TrainingConfig)
        self.inference_config = _parse(inference_config, InferenceConfig)
        self.model: Any = None

    @classmethod
    def _new_model(
        cls,
        model: type | None = None,
        config_manager: ConfigManager | None = None,
        model_config: ModelConfig | dict | None = None,
        data_config: DataConfig | dict | None = None,
        training_config: TrainingConfig | dict | None = None,
        inference_config: InferenceConfig | dict | None = None,
    ) -> PtychoModel:
        """A new, untrained ``model`` class instance (default PtychoPINN_Lightning)."""
        if model is None:
            from ptycho_torch.model import PtychoPINN_Lightning as model
        if config_manager is None:
            config_manager = ConfigManager(
                data_config, model_config, training_config, inference_config
            )
        cm = config_manager
        instance = cls(cm.model_config, cm.data_config, cm.training_config, cm.inference_config)
        instance.model = model(
            cm.model_config, cm.data_config, cm.training_config, cm.inference_config
        )
        return instance

    @staticmethod
    def _extract_configs_from_checkpoint(
        checkpoint_path: str | os.PathLike[str],
    ) -> tuple[
        DataConfig | None, ModelConfig | None, TrainingConfig | None, InferenceConfig | None
    ]:
        """(data, model, training, inference) configs saved in a ``.ckpt`` (None if absent).

        Read with ``torch.load(weights_only=True)``: nothing in the file is executed.
        """
        from ptychopinn.model.state_check import read_checkpoint

        path = Path(checkpoint_path)
        ckpt = read_checkpoint(path)
        hp = ckpt.get("hyper_parameters") or {}
        out = []
        for key, config_cls in (
            ("data_config", DataConfig),
            ("model_config", ModelConfig),
            ("training_config", TrainingConfig),
            ("inference_config", InferenceConfig),
        ):
            value = hp.get(key)
            out.append(
                None
                if value is None
                else config_from_dict(config_cls, value, source=f"{path}:{key}")
            )
        return tuple(out)  # type: ignore[return-value]

    @classmethod
    def from_checkpoint(
        cls, checkpoint_path: str | os.PathLike[str], map_location: str = "cpu"
    ) -> PtychoModel:
        """Load a ``.ckpt`` written by a PtychoPINN-Torch training run."""
        from ptycho_torch.model import PtychoPINN_Lightning

        d, m, t, i = cls._extract_configs_from_checkpoint(checkpoint_path)
        if any(c is None for c in (d, m, t, i)):
            raise ArchiveError(f"{checkpoint_path}: checkpoint carries no ptycho_torch configs")
        instance = cls(m, d, t, i)
        try:
            instance.model = PtychoPINN_Lightning.load_from_checkpoint(
                checkpoint_path,
                map_location=map_location,
                model_config=m,
                data_config=d,
                training_config=t,
                inference_config=i,
            )
        except ArchiveError as exc:  # weights of another layout; name the file
            raise ArchiveError(f"{checkpoint_path}: {exc}") from None
        return instance


class Trainer:
    """Lightning training of a PtychoModel on a PtychoDataLoader's data (core workflow)."""

    def __init__(
        self,
        model: PtychoModel,
        dataloader: PtychoDataLoader,
        config_manager: ConfigManager | None,
        training_config: TrainingConfig | None,
        strategy: str = "lightning",
    ) -> None:
        self.ptycho_model = model
        self.dataloader = dataloader
        self.config_manager = config_manager
        self.training_config = training_config
        self.strategy = strategy
        self._trainer: Any = None
        self._output_dir: str | None = None

    @classmethod
    def _from_lightning(
        cls,
        model: PtychoModel,
        dataloader: PtychoDataLoader,
        orchestration: Orchestration | str = Orchestration.LIGHTNING,
        config_manager: ConfigManager | None = None,
        training_config: TrainingConfig | dict | None = None,
    ) -> Trainer:
        """Prepare training: the model is (re)initialised from the training data (probe,
        intensity scale, pattern size) and a Lightning trainer is built (``_trainer``) so that
        callbacks can be added before :meth:`train`."""
        from ptycho_torch.model import PtychoPINN_Lightning
        from ptychopinn.workflows.execution import build_trainer

        cm = config_manager or dataloader.config_manager
        if training_config is not None:
            update_existing_config(cm.training_config, _parse(training_config, TrainingConfig))
        instance = cls(model, dataloader, cm, cm.training_config, "lightning")
        data = dataloader.dataset
        cfg = cm.configs
        report_unsupported(cfg)
        run_dir = dataloader.output_dir or cm.training_config.output_dir
        dataloader.output_dir = run_dir
        orchestration = Orchestration(getattr(orchestration, "value", orchestration))
        logger_kind = "mlflow" if orchestration is Orchestration.MLFLOW else "csv"
        instance._execution = core_execution_config(cfg, logger_kind=logger_kind)
        instance._training = core_training_config(cfg, output_dir=run_dir)
        model.model = PtychoPINN_Lightning.from_data(cfg, data)
        model.model_config, model.data_config = cm.model_config, cm.data_config
        model.training_config, model.inference_config = cm.training_config, cm.inference_config
        monitor = (
            model.model.val_loss_name
            if dataloader.val_dataset is not None
            else f"{model.model.loss_name}_epoch"
        )
        instance._trainer = build_trainer(
            instance._execution,
            instance._training,
            output_dir=run_dir,
            monitor=monitor,
        )
        instance._output_dir = run_dir
        return instance

    def train(
        self, orchestration: Orchestration | str = "lightning", experiment_name: str | None = None
    ) -> str:
        """Fit the model; return the run directory (checkpoints under ``checkpoints/``)."""
        from ptychopinn.workflows.datamodule import ScanDataModule
        from ptychopinn.workflows.train import fit_interruptibly

        del orchestration, experiment_name
        module = self.ptycho_model.model
        training, execution = self._training, self._execution
        datamodule = ScanDataModule(
            self.dataloader.dataset,
            training,
            execution,
            validation=self.dataloader.val_dataset,
        )
        logger.info(
            "training on %d groups for %d epochs (%s)",
            len(datamodule.train_set),
            training.nepochs,
            execution.accelerator,
        )
        fit_interruptibly(self._trainer, module, datamodule, None, self._output_dir)
        return str(self._output_dir)


class InferenceEngine:
    """Predict patches for a PtychoDataLoader and stitch them (core ``reconstruct``)."""

    def __init__(
        self,
        ptycho_model: PtychoModel,
        config_manager: ConfigManager | None = None,
        model_config: ModelConfig | dict | None = None,
        data_config: DataConfig | dict | None = None,
        training_config: TrainingConfig | dict | None = None,
        inference_config: InferenceConfig | dict | None = None,
    ) -> None:
        if config_manager is None:
            config_manager = ConfigManager(
                data_config, model_config, training_config, inference_config
            )
        self.config_manager = config_manager
        self.data_config = config_manager.data_config
        self.model_config = config_manager.model_config
        self.training_config = config_manager.training_config
        self.inference_config = config_manager.inference_config
        self.model = ptycho_model.model
        report_unsupported(config_manager.configs, inference=True)

    def _reconstruct(self, loader: PtychoDataLoader, *, return_patches: bool, device=None):
        from ptychopinn.workflows.infer import reconstruct

        device = device or resolve_device(self.training_config.device)
        return reconstruct(
            self.model.model,
            loader.dataset,
            batch_size=self.inference_config.batch_size,
            device=device,
            weighting=self.inference_config.patch_weighting,
            canvas_shape=loader.canvas_shape,
            return_patches=return_patches,
        )

    def predict(self, ptycho_dataloader: PtychoDataLoader, device: str | None = None) -> np.ndarray:
        """(M, N, N) complex64 object patches, one per scan position, without stitching."""
        return self._reconstruct(ptycho_dataloader, return_patches=True, device=device).patches

    def predict_and_stitch(self, ptycho_dataloader: PtychoDataLoader) -> np.ndarray:
        """The (H, W) complex64 object stitched from every scan position, checked against the
        measured patterns (a warning when it leaves them poorly explained; no ground truth
        needed, :func:`ptychopinn.refine.data_fit.report_data_fit`)."""
        from ptychopinn.refine.data_fit import report_data_fit
        from ptychopinn.refine.scan_probe import refinement_probe

        rec = self._reconstruct(ptycho_dataloader, return_patches=False)
        data = ptycho_dataloader.dataset
        report_data_fit(
            refinement_probe(self.model.model, data, logger)[0],
            data,
            rec.object,
            "the network's",
            "refine it with another reconstructor started from this object",
            logger,
        )
        return rec.object
