"""Compatibility API of the original (TensorFlow-era) ``ptycho`` package.

Ptychodus' ``PtychoPINN`` reconstructor imports ``ptycho.*`` in a child process; this package
serves exactly those imports as thin adapters over the :mod:`ptychopinn` core (PyTorch).
No TensorFlow is needed. The legacy ``params.cfg`` dictionary lives here and only here.
"""

from ptychopinn.warning_log import forward_warnings_to_log

# Ptychodus forwards its child's log records, not its stderr: core warnings must be logged.
forward_warnings_to_log()
