"""Compatibility API of the original ``ptycho_torch`` package (Ptychodus' PtychoPINN-Torch).

Thin adapters over the :mod:`ptychopinn` core: ``config_params`` (the five config
dataclasses), ``api.base_api`` (ConfigManager, PtychoDataLoader, PtychoModel, Trainer,
InferenceEngine), ``model.PtychoPINN_Lightning`` and ``lightning_utils.find_best_checkpoint``.
Importing the package (or ``config_params``) does not import torch.
"""
