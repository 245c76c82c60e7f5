"""Physics refinement after the network: the PINN's object, improved on the scan itself.

Methods (``--refine METHOD:K`` on ``ptycho_inference``):

* ``object:K`` — K epochs of direct, batched refinement of the stitched object (and, with
  ``refine_probe``, the probe) through the project's forward model (:mod:`.object`).
* ``finetune:K`` — K epochs of test-time training of the network on the scan (:mod:`.finetune`),
  then a new forward pass.
* ``lsqml:K`` — K epochs of Pty-Chi's LSQML started from the PINN object (optional extra).
"""

from __future__ import annotations

from .finetune import FinetuneSettings, finetune_model
from .object import ObjectRefineSettings, RefineResult, refine_object
from .run import refine_reconstruction
from .spec import RefineSpec, parse_refine_spec

__all__ = [
    "FinetuneSettings",
    "ObjectRefineSettings",
    "RefineResult",
    "RefineSpec",
    "finetune_model",
    "parse_refine_spec",
    "refine_object",
    "refine_reconstruction",
]
