"""The TensorFlow backend (``backend: tensorflow``; the optional ``tensorflow`` extra).

Only the network, the differentiable physics and the training loop are TensorFlow code;
configs, NPZ loading, grouping, stitching, metrics, pictures, the CLIs and the archive are
shared with the PyTorch backend. Importing this package does not import TensorFlow:
:func:`import_tensorflow` does, with one clear message when the extra is not installed.
The weight layouts of the two backends are converted by :mod:`.layout` (numpy only), so an
archive of either backend loads into the other.
"""

from __future__ import annotations

import os

from ptychopinn.errors import ConfigError

EXTRA_HINT = "pip install 'ptychopinn[tensorflow]'"


def model_backend(model) -> str:
    """``tensorflow`` for a TensorFlow model (its class says so), else ``pytorch``."""
    return getattr(model, "backend", "pytorch")


def tensorflow_available() -> bool:
    """Whether TensorFlow can be imported (without importing it when it cannot)."""
    import importlib.util

    return importlib.util.find_spec("tensorflow") is not None


def import_tensorflow():
    """The ``tensorflow`` module, or :class:`ConfigError` naming the extra to install.

    TensorFlow's C++ start-up log is silenced unless the user set ``TF_CPP_MIN_LOG_LEVEL``.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except ImportError as exc:
        raise ConfigError(
            f"backend 'tensorflow' needs TensorFlow, which is not installed here ({exc}); "
            f"install the extra with {EXTRA_HINT}, or use --backend pytorch"
        ) from None
    return tf
