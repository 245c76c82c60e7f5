"""Compatibility API of the original (TensorFlow-era) ``ptycho`` package.

Ptychodus' ``PtychoPINN`` reconstructor imports ``ptycho.*`` in a child process; this package
serves exactly those imports as thin adapters over the :mod:`ptychopinn` core (PyTorch).
No TensorFlow is needed. The legacy ``params.cfg`` dictionary lives here and only here.
"""
