"""Findings of the probe (issue #27): wrong results, stalls and tracebacks that bad input or a fault used to give."""

from __future__ import annotations

import sys

import pytest


class _Stop(Exception):
    """Raised by a stand-in stage once it has seen what the trial passed it."""


def test_prune_trial_prunes_by_its_stage_sparsity(monkeypatch):
    """--stage-sparsity reached the echo but not the pruner: the uniform --sparsity model was reported under it."""
    import trials.prune as prune

    seen = {}

    def pruned_stage(ctx, arch, pruner, sparsity, **options):
        seen.update(options, sparsity=sparsity)
        raise _Stop

    monkeypatch.setattr(sys, "argv", ["prune.py", "--stage-sparsity", "0.2,0.2,0.2,0.2"])
    monkeypatch.setattr(prune, "start_session", lambda args: args)
    monkeypatch.setattr(prune, "stage_context", lambda session: session)
    monkeypatch.setattr(prune, "dense_stage", lambda ctx, arch: (None, {}))
    monkeypatch.setattr(prune, "pruned_stage", pruned_stage)
    with pytest.raises(_Stop):
        prune.main()
    assert seen["stage_sparsity"] == pytest.approx((0.2, 0.2, 0.2, 0.2))
