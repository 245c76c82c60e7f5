"""Legacy workflow entry points (see :mod:`ptycho.workflows.components`)."""
