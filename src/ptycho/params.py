"""The legacy global parameter dictionary ``ptycho.params.cfg``.

Legacy callers (Ptychodus among them) fill it with
``update_legacy_dict(ptycho.params.cfg, config)`` and read values back with :func:`get`.
Only this compatibility package keeps such global state; the core never reads it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["cfg", "get", "set", "params"]

cfg: dict[str, Any] = {}


def get(key: str) -> Any:
    """The value of ``key``; KeyError (naming the key) when it was never set."""
    try:
        return cfg[key]
    except KeyError:
        raise KeyError(
            f"ptycho.params.cfg['{key}'] is not set (fill it with "
            "update_legacy_dict(ptycho.params.cfg, config), or load a model bundle)"
        ) from None


def set(key: str, value: Any) -> None:
    """Set ``cfg[key] = value``."""
    cfg[key] = value


def params() -> dict[str, Any]:
    """A shallow copy of the whole dictionary."""
    return dict(cfg)
