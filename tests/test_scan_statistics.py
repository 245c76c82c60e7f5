"""Inference with the batch-norm statistics of the scan being reconstructed (AdaBN)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from ptychopinn.cli.inference import build_parser, inference_config
from ptychopinn.config import ModelConfig
from ptychopinn.model.pinn import PtychoPINN
from ptychopinn.model.scan_statistics import (
    MIN_PATTERNS,
    batch_norm_layers,
    sample_batches,
)
from ptychopinn.workflows.infer import reconstruct


def _model(scan) -> PtychoPINN:
    torch.manual_seed(0)
    model = PtychoPINN(ModelConfig(N=32, n_filters_scale=1), scan.probe, 1.0)
    assert model.config.normalization == "batch"  # the recipe
    return model.eval()


def _with_wrong_statistics(model: PtychoPINN) -> PtychoPINN:
    """The same weights, with stored statistics far from any scan's."""
    wrong = copy.deepcopy(model)
    for layer in batch_norm_layers(wrong.generator):
        layer.running_mean.add_(3.0)
        layer.running_var.mul_(20.0)
    return wrong


def _buffers(model: PtychoPINN) -> list[torch.Tensor]:
    return [b.clone() for layer in batch_norm_layers(model) for b in layer.buffers()]


def test_predictions_follow_the_scan_not_the_stored_statistics(small_scan):
    assert small_scan.n_positions >= MIN_PATTERNS
    model = _model(small_scan)
    wrong = _with_wrong_statistics(model)
    stored = _buffers(wrong)
    adapted = reconstruct(wrong, small_scan, batch_size=32, adapt_batch_norm=True)
    reference = reconstruct(model, small_scan, batch_size=32, adapt_batch_norm=True)
    scale = np.abs(reference.object).max()
    # The stored statistics do not matter: both models predict with the scan's own.
    np.testing.assert_allclose(adapted.object, reference.object, atol=1e-4 * scale)
    # Without adaptation they do.
    plain = reconstruct(wrong, small_scan, batch_size=32)  # the default
    assert np.abs(plain.object - reference.object).max() > 0.05 * scale
    # The model is left as it was: stored statistics, momentum, eval mode.
    for before, after in zip(stored, _buffers(wrong), strict=True):
        torch.testing.assert_close(before, after)
    assert all(not m.training and m.momentum == 0.1 for m in batch_norm_layers(wrong))


def test_adapted_statistics_are_the_scans(small_scan):
    """The statistics used are those of the scan's patterns: the same reconstruction as a
    model whose stored statistics were estimated from the whole scan in one batch."""
    model = _model(small_scan)
    whole = copy.deepcopy(model)
    for layer in batch_norm_layers(whole):
        layer.reset_running_stats()
        layer.momentum = None
        layer.train()
    amplitudes = torch.from_numpy(np.asarray(small_scan.diffraction, np.float32))[:, None]
    with torch.no_grad():
        whole.generator(amplitudes * whole.intensity_scale)
    whole.eval()
    adapted = reconstruct(
        _with_wrong_statistics(model), small_scan, batch_size=64, adapt_batch_norm=True
    )
    expected = reconstruct(whole, small_scan, adapt_batch_norm=False)
    scale = np.abs(expected.object).max()
    np.testing.assert_allclose(adapted.object, expected.object, atol=1e-3 * scale)


def test_a_small_scan_keeps_the_stored_statistics(small_scan):
    few = small_scan.subset(np.arange(MIN_PATTERNS - 1))
    wrong = _with_wrong_statistics(_model(small_scan))
    adapted = reconstruct(wrong, few, adapt_batch_norm=True)
    plain = reconstruct(wrong, few, adapt_batch_norm=False)
    np.testing.assert_array_equal(adapted.object, plain.object)


def test_sample_batches_cover_the_sample_once_each_spread_over_it():
    batches = sample_batches(torch.arange(130), 64)
    assert [len(b) for b in batches] == [44, 43, 43]
    assert sorted(torch.cat(batches).tolist()) == list(range(130))
    assert all(b.min() < 3 and b.max() > 126 for b in batches)


@pytest.mark.parametrize(("flag", "expected"), [([], False), (["true"], True)])
def test_inference_flag(flag, expected):
    args = ["--model_path", "m", "--test_data", "t.npz"]
    if flag:
        args += ["--adapt_batch_norm", *flag]
    assert inference_config(build_parser().parse_args(args)).adapt_batch_norm is expected
