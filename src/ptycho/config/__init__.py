"""Typed configs of the ``ptycho`` compatibility API (see :mod:`ptycho.config.config`)."""
