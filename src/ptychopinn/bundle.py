"""The model archive ``wts.h5.zip`` (format: README, "Command line", and docs/ptychodus.md).

A zip holding ``manifest.json`` (format, version, backend, model names, the intensity scale,
a SHA-256 per member), ``configs.json`` and the weights: ``weights.pt`` (a plain tensor state
dict) from the PyTorch backend, ``weights.h5`` (one numeric HDF5 dataset per weight, see
:mod:`ptychopinn.tf_backend.layout`) from the TensorFlow backend. Loading never executes code
from the archive: JSON is parsed, weights are read with ``torch.load(weights_only=True)`` or
h5py, and every member is checked against its digest. The manifest's ``backend`` says which
weights member to read; either backend's weights load into either backend's model through
the layout conversion (:func:`load_model` always gives a PyTorch model, which needs no
TensorFlow; :func:`load_for_backend` picks the backend).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import tempfile
import zipfile
import zlib
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from ptychopinn import __version__
from ptychopinn.atomic import atomic_write
from ptychopinn.config import (
    ExecutionConfig,
    ModelConfig,
    TrainingConfig,
    config_sections,
    from_dict,
)
from ptychopinn.errors import ArchiveError, TrainingDiverged
from ptychopinn.model.pinn import PtychoPINN
from ptychopinn.model.state_check import require_matching_state
from ptychopinn.tf_backend import EXTRA_HINT, model_backend, tensorflow_available
from ptychopinn.tf_backend.layout import (
    tensorflow_to_torch,
    torch_to_tensorflow,
    weights_from_h5_bytes,
    weights_to_h5_bytes,
)

ARCHIVE_NAME = "wts.h5.zip"
FORMAT_NAME = "ptychopinn-model"
#: 2: decoders convolve before upsampling (the published layout). Version-1 weights belong to
#: the earlier layout (upsampling first), which is no longer built.
FORMAT_VERSION = 2
#: The backend whose archives this module writes by default (PyTorch models).
BACKEND = "pytorch"
#: The weights member of each backend's archive.
WEIGHT_MEMBERS = {"pytorch": "weights.pt", "tensorflow": "weights.h5"}
MODEL_NAMES = ["autoencoder", "diffraction_to_obj"]
#: Largest member (inflated) an archive may hold: far above any model of this engine (filters
#: x16 at N=256 are ~0.3 GB), small enough that a zip bomb cannot take the memory.
MAX_MEMBER_BYTES = 2 * 1024**3
_CHUNK = 1 << 20
log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A model restored from an archive, with the configs it was trained with; ``model`` is
    a :class:`PtychoPINN`, or a ``TFPtychoPINN`` from :func:`load_for_backend`."""

    model: PtychoPINN
    model_config: ModelConfig
    training_config: TrainingConfig
    manifest: dict
    #: The archive it was read from (None when built in memory).
    path: Path | None = None

    @property
    def intensity_scale(self) -> float:
        return intensity_scale_of(self.model)

    @property
    def backend(self) -> str:
        """The backend of ``model`` (not necessarily the one that wrote the archive)."""
        return model_backend(self.model)


def intensity_scale_of(model) -> float:
    """A model's intensity scale as a float, for either backend."""
    scale = model.intensity_scale
    return float(scale.detach() if hasattr(scale, "detach") else scale)


def _non_finite_keys(weights: dict) -> list[str]:
    """The keys of ``weights`` (tensors or arrays) that hold NaN/Inf values."""

    def finite(v) -> bool:
        return bool(torch.isfinite(v).all() if torch.is_tensor(v) else np.isfinite(v).all())

    return [k for k, v in weights.items() if not finite(v)]


def _model_weights(model) -> dict:
    """Either backend's weights by name (TensorFlow arrays, or the PyTorch state dict)."""
    return model.weight_arrays() if model_backend(model) == "tensorflow" else model.state_dict()


def _weights_member(model) -> tuple[str, bytes]:
    if model_backend(model) == "tensorflow":
        return WEIGHT_MEMBERS["tensorflow"], weights_to_h5_bytes(model.weight_arrays())
    buffer = io.BytesIO()
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    torch.save(state, buffer)
    return WEIGHT_MEMBERS["pytorch"], buffer.getvalue()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_model(
    model: PtychoPINN,
    output_dir: str | os.PathLike,
    *,
    training_config: TrainingConfig,
    execution_config: ExecutionConfig | None = None,
) -> Path:
    """Write ``<output_dir>/wts.h5.zip`` atomically and return its path; the model's backend
    (PyTorch or TensorFlow) decides the weights member and the manifest's ``backend``."""
    scale = intensity_scale_of(model)
    if not math.isfinite(scale) or _non_finite_keys(_model_weights(model)):
        raise TrainingDiverged(
            f"{Path(output_dir) / ARCHIVE_NAME}: not written: the model's weights or intensity "
            f"scale ({scale:g}) are not finite; training diverged (lower learning_rate, now "
            f"{training_config.learning_rate:g}, or check the data's scale)"
        )
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    weights_name, weights = _weights_member(model)
    configs = config_sections(training_config, execution_config)
    configs["model"] = asdict(model.config)  # the architecture actually saved
    members = {
        "configs.json": json.dumps(configs, indent=2, default=str).encode(),
        weights_name: weights,
    }
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "backend": model_backend(model),
        "model_names": MODEL_NAMES,
        "created_by": f"ptychopinn {__version__}",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "intensity_scale": scale,
        "reference_energy": model.reference_energy,
        "N": model.config.N,
        "gridsize": model.config.gridsize,
        "sha256": {name: _sha256(data) for name, data in members.items()},
        "sizes": {name: len(data) for name, data in members.items()},
    }

    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("manifest.json", json.dumps(manifest, indent=2))
            for name, data in members.items():
                zf.writestr(name, data)

    return atomic_write(output_dir / ARCHIVE_NAME, write)


#: The members of an archive (of the PyTorch backend), as a directory holding them unpacked
#: has them; a TensorFlow archive has ``weights.h5`` instead of ``weights.pt``.
ARCHIVE_MEMBERS = ("manifest.json", "configs.json", WEIGHT_MEMBERS["pytorch"])


def _unpacked_members(path: Path) -> tuple[str, ...] | None:
    """The archive members a directory holds unpacked (either backend's), or None."""
    for weights in WEIGHT_MEMBERS.values():
        members = ("manifest.json", "configs.json", weights)
        if all((path / m).is_file() for m in members):
            return members
    return None


def find_archive(path: str | os.PathLike, stack: ExitStack | None = None) -> Path:
    """The archive of a file path or a model directory.

    A directory may hold ``wts.h5.zip`` itself, in exactly one sub-directory, or its members
    unpacked (what Ptychodus leaves when its ``model.zip`` is a copy of the archive); the
    last are zipped into a temporary archive that lives as long as ``stack`` (without a
    stack that layout is refused).
    """
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise ArchiveError(f"{path}: model archive not found")
    direct = path / ARCHIVE_NAME
    if direct.is_file():
        return direct
    unpacked_members = _unpacked_members(path) if stack is not None else None
    if unpacked_members:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ptycho-bundle-")))
        archive = tmp / ARCHIVE_NAME
        with zipfile.ZipFile(archive, "w") as zf:
            for member in unpacked_members:
                zf.write(path / member, member)
        return archive
    nested = sorted(path.glob(f"*/{ARCHIVE_NAME}"))
    if len(nested) == 1:
        return nested[0]
    unpacked = f", or its members {', '.join(ARCHIVE_MEMBERS)}" if stack is not None else ""
    raise ArchiveError(
        f"{path}: expected a model archive '{ARCHIVE_NAME}' in this directory{unpacked}, "
        f"found {sorted(p.name for p in path.iterdir())}"
    )


def _read_members(path: Path) -> tuple[dict, dict[str, bytes]]:
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            if "manifest.json" not in names and ARCHIVE_NAME in names:
                # A bundle zip (as Ptychodus writes it) wrapping the archive itself.
                inner = io.BytesIO(_read_capped(path, zf, ARCHIVE_NAME, MAX_MEMBER_BYTES))
                with zipfile.ZipFile(inner) as izf:
                    return _parse(path, izf)
            return _parse(path, zf)
    # NotImplementedError: an unsupported compression; RuntimeError: an encrypted member.
    except (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError, RuntimeError) as exc:
        raise ArchiveError(
            f"{path}: not a readable model archive (truncated or corrupt zip: {exc})"
        ) from exc


def _read_capped(path: Path, zf: zipfile.ZipFile, name: str, limit: int) -> bytes:
    """A member's bytes, refused once they inflate beyond ``limit`` (read in chunks)."""
    declared = zf.getinfo(name).file_size
    if declared > limit:
        raise ArchiveError(
            f"{path}: archive member '{name}' inflates to {declared} bytes, more than the "
            f"{limit} expected"
        )
    chunks, total = [], 0
    with zf.open(name) as member:
        while block := member.read(_CHUNK):
            total += len(block)
            if total > limit:
                raise ArchiveError(
                    f"{path}: archive member '{name}' inflates beyond the {limit} bytes expected"
                )
            chunks.append(block)
    return b"".join(chunks)


def _mapping(manifest: dict, key: str, path: Path) -> dict:
    value = manifest.get(key, {})
    if not isinstance(value, dict):
        raise ArchiveError(
            f"{path}: manifest.json '{key}' must be a mapping of member names; found "
            f"{type(value).__name__}"
        )
    return value


def _parse(path: Path, zf: zipfile.ZipFile) -> tuple[dict, dict[str, bytes]]:
    names = set(zf.namelist())
    if "manifest.json" not in names:
        raise ArchiveError(
            f"{path}: expected 'manifest.json' in the archive, found {sorted(names)}"
        )
    try:
        manifest = json.loads(_read_capped(path, zf, "manifest.json", 1 << 20))
    except ValueError as exc:
        raise ArchiveError(f"{path}: manifest.json is not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        found = manifest.get("format") if isinstance(manifest, dict) else manifest
        raise ArchiveError(f"{path}: manifest format: expected '{FORMAT_NAME}', found {found!r}")
    version = manifest.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ArchiveError(
            f"{path}: manifest.json 'format_version' must be a positive integer; found {version!r}"
        )
    if version > FORMAT_VERSION:
        raise ArchiveError(
            f"{path}: archive format version {version!r} is newer than this "
            f"ptychopinn supports ({FORMAT_VERSION}); upgrade ptychopinn"
        )
    if version < FORMAT_VERSION:
        raise ArchiveError(
            f"{path}: archive format version {version} holds weights for an earlier decoder "
            f"layout that this ptychopinn (format {FORMAT_VERSION}) no longer builds; "
            "retrain the model with ptycho_train"
        )
    backend = manifest.get("backend")
    if backend not in WEIGHT_MEMBERS:
        raise ArchiveError(
            f"{path}: manifest.json 'backend': expected one of {sorted(WEIGHT_MEMBERS)}, "
            f"found {backend!r}"
        )
    hashes = _mapping(manifest, "sha256", path)
    sizes = _mapping(manifest, "sizes", path)
    members = {}
    for name in ("configs.json", WEIGHT_MEMBERS[backend]):
        if name not in names:
            raise ArchiveError(f"{path}: archive member '{name}' is missing")
        size = sizes.get(name)
        limit = size if isinstance(size, int) and 0 <= size <= MAX_MEMBER_BYTES else None
        data = _read_capped(path, zf, name, MAX_MEMBER_BYTES if limit is None else limit)
        if not isinstance(hashes.get(name), str):
            raise ArchiveError(
                f"{path}: manifest.json 'sha256': expected the SHA-256 of member '{name}', "
                f"found {hashes.get(name)!r} (an archive not written by save_model, or edited)"
            )
        if _sha256(data) != hashes.get(name):
            raise ArchiveError(
                f"{path}: archive member '{name}' does not match its SHA-256 in "
                "the manifest (tampered or corrupt)"
            )
        members[name] = data
    return manifest, members


def _positive_number(manifest: dict, key: str, archive: Path, default: float | None):
    """A positive finite manifest number, ``default`` when absent (older archives)."""
    value = manifest.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ArchiveError(
            f"{archive}: manifest.json '{key}' must be a positive number; found {value!r}"
        )
    return float(value)


def torch_state_from_tensorflow(weights: dict, torch_keys: list[str]) -> dict:
    """TensorFlow-layout weights as a PyTorch state dict (tensors owning their memory) for a
    model whose state-dict keys are ``torch_keys``."""
    converted = tensorflow_to_torch(weights, torch_keys)
    return {k: torch.from_numpy(np.array(v, copy=True)) for k, v in converted.items()}


@dataclass
class ArchiveContents:
    """An archive's parsed members: configs and weights (in the layout of ``backend``)."""

    path: Path
    manifest: dict
    model_config: ModelConfig
    training_config: TrainingConfig
    backend: str
    weights: dict  # PyTorch: tensors (state dict); TensorFlow: numpy arrays (its layout)

    def number(self, key: str, default: float | None) -> float | None:
        return _positive_number(self.manifest, key, self.path, default)

    def torch_state(self, torch_keys: list[str]) -> dict:
        """The weights as a PyTorch state dict (converted from a TensorFlow archive)."""
        if self.backend == "pytorch":
            return self.weights
        return torch_state_from_tensorflow(self.weights, torch_keys)

    def tensorflow_weights(self) -> dict[str, np.ndarray]:
        """The weights in the TensorFlow layout (converted from a PyTorch archive)."""
        if self.backend == "tensorflow":
            return self.weights
        return torch_to_tensorflow(self.weights)


def read_archive(path: str | os.PathLike) -> ArchiveContents:
    """Parse and check an archive (the file, a zip wrapping it, or a directory, see
    :func:`find_archive`) without building a model."""
    with ExitStack() as stack:
        archive = find_archive(path, stack)
        manifest, members = _read_members(archive)
    if archive.name == ARCHIVE_NAME and not archive.exists():  # a temporary re-zip, gone now
        archive = Path(path)
    try:
        configs = json.loads(members["configs.json"])
        model_config = from_dict(ModelConfig, configs["model"], source=f"{archive}:configs.json")
        training = from_dict(
            TrainingConfig,
            {**configs["training"], "model": configs["model"]},
            source=f"{archive}:configs.json",
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise ArchiveError(f"{archive}: configs.json is not usable ({exc})") from exc
    for key in ("N", "gridsize"):  # written from the same model: a difference is tampering
        if key in manifest and manifest[key] != getattr(model_config, key):
            raise ArchiveError(
                f"{archive}: manifest.json says {key}={manifest[key]!r} but configs.json "
                f"says {key}={getattr(model_config, key)!r}; the archive was altered"
            )
    backend = manifest["backend"]
    if backend == "tensorflow":
        weights = weights_from_h5_bytes(members[WEIGHT_MEMBERS[backend]], str(archive))
    else:
        try:
            weights = torch.load(
                io.BytesIO(members["weights.pt"]), map_location="cpu", weights_only=True
            )
        except Exception as exc:  # weights_only refuses anything but tensors and containers
            raise ArchiveError(f"{archive}: weights.pt could not be loaded safely ({exc})") from exc
    return ArchiveContents(archive, manifest, model_config, training, backend, weights)


def _model_arguments(contents: ArchiveContents) -> dict:
    """What either backend's model is built with, from the archive (besides the probe,
    which its weights carry)."""
    training = contents.training_config
    return {
        "intensity_scale": contents.number("intensity_scale", 1.0),
        "probe_trainable": training.probe_trainable,
        "intensity_scale_trainable": training.intensity_scale_trainable,
        # The training data's mean counts per pattern (absent in archives written before it).
        "reference_energy": contents.number("reference_energy", None),
    }


def _require_finite(weights: dict, path: Path) -> None:
    """Refuse weights with NaN/Inf: the network would predict NaN everywhere."""
    bad = _non_finite_keys(weights)
    if bad:
        raise ArchiveError(
            f"{path}: weights.{bad[0]} (and {len(bad) - 1} more) hold NaN/Inf values: the "
            "training that wrote this archive diverged; train again with a lower learning_rate"
        )


def _pytorch_model(contents: ArchiveContents, device: str | torch.device) -> LoadedModel:
    config = contents.model_config
    N = config.N
    model = PtychoPINN(
        config, torch.ones(N, N, dtype=torch.complex64), **_model_arguments(contents)
    )
    state = contents.torch_state(list(model.state_dict()))
    require_matching_state(model.state_dict(), state, str(contents.path))
    _require_finite(state, contents.path)
    model.load_state_dict(state)
    model = model.to(torch.device(device)).eval()
    return LoadedModel(model, config, contents.training_config, contents.manifest, contents.path)


def _tensorflow_model(contents: ArchiveContents) -> LoadedModel:
    from ptychopinn.tf_backend.model import TFPtychoPINN

    config = contents.model_config
    N = config.N
    model = TFPtychoPINN(config, np.ones((N, N), dtype=np.complex64), **_model_arguments(contents))
    weights = contents.tensorflow_weights()
    _require_finite(weights, contents.path)
    model.load_weight_arrays(weights, str(contents.path))
    return LoadedModel(model, config, contents.training_config, contents.manifest, contents.path)


def load_model(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> LoadedModel:
    """A PyTorch model from an archive of either backend (TensorFlow weights are converted;
    TensorFlow need not be installed)."""
    return _pytorch_model(read_archive(path), device)


def load_tensorflow_model(path: str | os.PathLike) -> LoadedModel:
    """A TensorFlow model from an archive of either backend (PyTorch weights are converted);
    needs the ``tensorflow`` extra."""
    return _tensorflow_model(read_archive(path))


def load_for_backend(
    path: str | os.PathLike, backend: str = "auto", *, device: str | torch.device = "cpu"
) -> LoadedModel:
    """Load an archive into the model of ``backend``: ``pytorch``, ``tensorflow`` or ``auto``
    (the backend that wrote it when it is installed, else PyTorch through the conversion).

    ``tensorflow`` without TensorFlow installed is refused naming the extra to install.
    """
    contents = read_archive(path)
    if backend == "auto":
        written_by = contents.backend
        backend = (
            "tensorflow" if written_by == "tensorflow" and tensorflow_available() else "pytorch"
        )
        if written_by != backend:
            log.info(
                "%s: written by the %s backend, which is not installed (%s); its weights "
                "are converted to the pytorch backend",
                path,
                written_by,
                EXTRA_HINT,
            )
    if backend == "tensorflow":
        if not tensorflow_available():
            raise ArchiveError(
                f"{path}: backend 'tensorflow' was asked for, but TensorFlow is not installed; "
                f"install the extra with {EXTRA_HINT}, or load it with --backend pytorch "
                "(archives of either backend load into either)"
            )
        return _tensorflow_model(contents)
    return _pytorch_model(contents, device)
