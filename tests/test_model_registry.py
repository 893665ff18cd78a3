"""The model registry (common/models.py): ResNet-18's cache keys pinned, models by name, a user's factory."""

from common import trial
from common.cache import key_digest
from common.models import arch_key
from common.stages import dense_key, pruned_key


def test_resnet18_cache_keys_are_those_existing_caches_and_records_hold(tmp_path):
    """ResNet-18's dense and pruned keys in the smoke profile, pinned before `--model` existed: every cached
    model and every recorded result was built under these digests, so adding models must not move them."""
    args = trial.parse_params(trial.base_parser("t"), ["--cache-dir", str(tmp_path / "c"),
                                                       "--data-dir", str(tmp_path / "d")])
    ctx = trial.stage_context(trial.start_session(args))
    assert arch_key("resnet18") == "b2-2-2-2_w64-128-256-512_relu_k3"
    assert key_digest(dense_key(ctx, "resnet18")) == "afb0c41a5edc8861"
    assert key_digest(pruned_key(ctx, "resnet18", "fpgm", 0.5)) == "9f2b6bdad6a55209"
    assert key_digest(pruned_key(ctx, "resnet18", "l1", 0.5, "gradual", 3)) == "e4b0e2f11766f942"
    assert key_digest(pruned_key(ctx, "resnet18", "fpgm", 0.5, stage_sparsity=(0.2, 0.4, 0.6, 0.7))) == \
        "9d868093221073c5"
