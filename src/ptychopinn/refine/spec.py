"""The ``METHOD:K`` refinement spec of ``ptycho_inference --refine`` (``auto``, the default:
``object:50`` only where the network's result cannot be trusted)."""

from __future__ import annotations

from dataclasses import dataclass

from ptychopinn.errors import ConfigError

METHODS = ("object", "finetune", "lsqml")
#: Epochs when the spec names only the method.
DEFAULT_EPOCHS = {"object": 50, "finetune": 5, "lsqml": 20}
MAX_EPOCHS = 100_000
#: What ``auto`` runs where the network's result cannot be trusted.
AUTO = "object"


@dataclass(frozen=True)
class RefineSpec:
    """A refinement method and its number of epochs."""

    method: str
    epochs: int
    #: Run only where the network's result cannot be trusted (``auto``: another probe than
    #: the model's, a poor fit to the data, a twin-symmetric probe).
    automatic: bool = False


def parse_refine_spec(text: str | None) -> RefineSpec | None:
    """``'object:20'`` -> RefineSpec('object', 20); ``None``/``'none'`` -> None; ``'auto'``
    -> ``object:50`` run only where the network's result cannot be trusted."""
    if text is None or text.strip().lower() in ("", "none", "off"):
        return None
    if text.strip().lower() == "auto":
        return RefineSpec(AUTO, DEFAULT_EPOCHS[AUTO], automatic=True)
    method, colon, count = text.strip().partition(":")
    method = method.lower()
    expected = (
        f"auto, none, or METHOD[:EPOCHS] with METHOD one of {', '.join(METHODS)} (e.g. object:50)"
    )
    if method not in METHODS or (colon and not count.strip()):
        raise ConfigError(f"--refine: expected {expected}, found {text!r}")
    if not count:
        return RefineSpec(method, DEFAULT_EPOCHS[method])
    try:
        epochs = int(count)
    except ValueError:
        raise ConfigError(f"--refine: expected {expected}, found {text!r}") from None
    if not 1 <= epochs <= MAX_EPOCHS:
        raise ConfigError(
            f"--refine: expected between 1 and {MAX_EPOCHS} epochs, found {epochs} in {text!r}"
        )
    return RefineSpec(method, epochs)
