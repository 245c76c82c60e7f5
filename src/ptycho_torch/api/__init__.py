"""High-level API of the ``ptycho_torch`` compatibility package (see :mod:`.base_api`)."""
