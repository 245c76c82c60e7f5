"""Shared fixtures: small simulated scans made with the project's own simulator."""

from __future__ import annotations

import pytest

from ptychopinn.data.simulate import simulate_dataset


@pytest.fixture(scope="session")
def small_scan():
    """N=32, ~200 positions, 1e6 photons: enough for a few-second training run."""
    return simulate_dataset(N=32, object_size=96, step=4.5, nphotons=1e6, seed=3, jitter=0.3)


@pytest.fixture(scope="session")
def tiny_scan():
    """N=32, ~50 positions: for plumbing tests (resume, DDP, CLI)."""
    return simulate_dataset(N=32, object_size=72, step=6, nphotons=1e5, seed=5)
