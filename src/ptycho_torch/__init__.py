"""Compatibility API of the original ``ptycho_torch`` package (Ptychodus' PtychoPINN-Torch).

Thin adapters over the :mod:`ptychopinn` core: ``config_params`` (the five config
dataclasses), ``api.base_api`` (ConfigManager, PtychoDataLoader, PtychoModel, Trainer,
InferenceEngine), ``model.PtychoPINN_Lightning`` and ``lightning_utils.find_best_checkpoint``.
Importing the package (or ``config_params``) does not import torch.
"""

from ptychopinn.warning_log import forward_warnings_to_log

# Ptychodus forwards its child's log records, not its stderr: core warnings must be logged.
forward_warnings_to_log()
