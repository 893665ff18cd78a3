"""Reinforcement-learning NAS inside nnictl: a REINFORCE policy-gradient tuner over `choice` spaces.

Why our own tuner and not NNI's RL: NNI 3.0's `PPOTuner` needs TensorFlow (tf-keras, legacy Keras)
and only takes `layer_choice`/`input_choice` spaces; its NAS engine's `PolicyBasedRL` needs
`nni.nas` + pytorch_lightning + tianshou 0.5.1 + gym 0.26.2, and tianshou 0.5.1 in turn imports
h5py, numba, gymnasium and pettingzoo (checked: `import tianshou` failed on each in turn), while
`nni.nas` warns that this torch is unsupported. A custom tuner keeps RL on the same engine as the EA run: the same
search_space.json, trial script, objective, web UI, `nnictl experiment export` and best-arch export,
with numpy as its only dependency. It is registered from the experiment config:

    tuner:
      codeDirectory: ../..              # the repository root, so `common` is importable
      className: common.rl_tuner.ReinforceTuner
      classArgs: {optimize_mode: maximize, seed: 0}

Algorithm: REINFORCE with a moving-average baseline (Williams 1992), the controller update of
Zoph & Le (2017) and ENAS, with a factorised policy (one softmax per search-space key) instead of
an LSTM: with 5 keys and ~50 trials an LSTM has far more weights than rewards to fit.

- sample: a_k ~ softmax(theta_k) for every key k;
- reward: the trial's `default` (the budget-aware objective of common/objective.py), negated
  for `minimize`;
- advantage A = clip((r - b) / s, -clip, +clip) with b, s an exponential moving mean/std of past
  rewards: scale-free, so the same learning rate works for smoke accuracies (~0.3) and CIFAR-10
  accuracies that differ in the third decimal;
- update: theta_k += lr * (A * (onehot(a_k) - pi_k) + entropy_weight * dH(pi_k)/dtheta_k); the
  entropy bonus keeps the policy from collapsing onto the first lucky candidate.
Defaults (lr 0.3, baseline decay 0.8, entropy 0.05) are tuned for ~50-trial searches: on a toy
landscape over the 72-candidate space (reward differences of 0.01 per key, noise 0.003) 48 trials
hit the best candidate in 29 of 30 seeds, random sampling in about half.
With trialConcurrency > 1 a result may arrive after the policy moved; the update then uses the
current policy's gradient (asynchronous REINFORCE), a standard approximation.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from nni.tuner import Tuner
from nni.utils import OptimizeMode, extract_scalar_reward

from common.nni_compat import tolerates_stale_ids

logger = logging.getLogger(__name__)


@tolerates_stale_ids  # a re-delivered parameter id is logged, not fatal (common/nni_compat.py)
class ReinforceTuner(Tuner):
    """REINFORCE policy over an NNI `choice` search space (see the module docstring)."""

    def __init__(self, optimize_mode: str = "maximize", learning_rate: float = 0.3, baseline_decay: float = 0.8,
                 entropy_weight: float = 0.05, advantage_clip: float = 3.0, seed: int | None = None) -> None:
        if optimize_mode not in ("maximize", "minimize"):
            raise ValueError(f"optimize_mode must be 'maximize' or 'minimize', got {optimize_mode!r}")
        if learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
        if not 0 <= baseline_decay < 1:
            raise ValueError(f"baseline_decay must be in [0, 1), got {baseline_decay}")
        if entropy_weight < 0 or advantage_clip <= 0:
            raise ValueError(f"entropy_weight must be >= 0 and advantage_clip > 0, got {entropy_weight}, "
                             f"{advantage_clip}")
        self.optimize_mode = OptimizeMode(optimize_mode)
        self.lr, self.decay = learning_rate, baseline_decay
        self.entropy_weight, self.clip = entropy_weight, advantage_clip
        self.rng = np.random.default_rng(seed)
        self.choices: dict[str, list[Any]] = {}
        self.logits: dict[str, np.ndarray] = {}
        self.pending: dict[int, dict[str, int]] = {}  # parameter_id -> sampled index per key
        self.mean: float | None = None
        self.var = 0.0
        self.updates = 0

    # ------------------------------------------------------------------------------------ NNI interface

    def update_search_space(self, search_space: dict[str, Any]) -> None:
        choices = {}
        for key, spec in search_space.items():
            if not isinstance(spec, dict) or spec.get("_type") != "choice" or not spec.get("_value"):
                raise ValueError(f"ReinforceTuner supports only non-empty `choice` parameters; {key!r} is {spec!r}")
            if any(isinstance(v, (dict, list)) for v in spec["_value"]):
                raise ValueError(f"ReinforceTuner supports flat choices only; {key!r} has nested values")
            choices[key] = list(spec["_value"])
        # Keep what was learned for keys whose choices did not change (NNI may re-send the space).
        self.logits = {k: self.logits[k] if k in self.logits and self.choices.get(k) == v else np.zeros(len(v))
                       for k, v in choices.items()}
        self.choices = choices

    def generate_parameters(self, parameter_id: int, **kwargs: Any) -> dict[str, Any]:
        if not self.choices:
            raise RuntimeError("ReinforceTuner has no search space yet")
        sample = {k: int(self.rng.choice(len(v), p=_softmax(self.logits[k]))) for k, v in self.choices.items()}
        self.pending[parameter_id] = sample
        return {k: self.choices[k][i] for k, i in sample.items()}

    def receive_trial_result(self, parameter_id: int, parameters: dict[str, Any], value: Any, **kwargs: Any) -> None:
        # The tuner's own record of what it sampled, not `parameters` (NNI may mis-pair them, #5693).
        sample = self.pending.pop(parameter_id, None) or self._indices(parameters)
        if sample is None:
            logger.warning("result for unknown parameter id %s with parameters %s ignored", parameter_id, parameters)
            return
        self.update(sample, extract_scalar_reward(value))

    def trial_end(self, parameter_id: int, success: bool, **kwargs: Any) -> None:
        # A failed trial has no reward to learn from; it is simply not counted.
        self.pending.pop(parameter_id, None)

    def import_data(self, data: list[dict[str, Any]]) -> None:
        """Replay finished trials (resumed experiments) through the policy update."""
        for record in data:
            sample = self._indices(record.get("parameter", {}))
            if sample is not None:
                self.update(sample, extract_scalar_reward(record["value"]))

    # -------------------------------------------------------------------------------------------- policy

    def probabilities(self) -> dict[str, dict[Any, float]]:
        return {k: dict(zip(self.choices[k], _softmax(t).round(4).tolist(), strict=True))
                for k, t in self.logits.items()}

    def update(self, sample: dict[str, int], reward: float) -> float:
        """One REINFORCE step for the sampled indices; returns the advantage used."""
        r = float(reward) if self.optimize_mode == OptimizeMode.Maximize else -float(reward)
        if self.mean is None:
            advantage = 0.0  # no baseline yet: the first reward only starts the moving average
            self.mean = r
        else:
            advantage = float(np.clip((r - self.mean) / max(np.sqrt(self.var), 1e-8), -self.clip, self.clip))
            delta = r - self.mean
            self.mean += (1 - self.decay) * delta
            self.var = self.decay * (self.var + (1 - self.decay) * delta**2)
        for key, idx in sample.items():
            pi = _softmax(self.logits[key])
            grad_logp = -pi
            grad_logp[idx] += 1.0
            log_pi = np.log(pi + 1e-12)
            grad_entropy = -pi * (log_pi + (-(pi * log_pi).sum()))
            self.logits[key] += self.lr * (advantage * grad_logp + self.entropy_weight * grad_entropy)
        self.updates += 1
        logger.info("REINFORCE update %d: reward %.4f advantage %+.2f policy %s", self.updates, r, advantage,
                    self.probabilities())
        return advantage

    def _indices(self, parameters: Any) -> dict[str, int] | None:
        if not isinstance(parameters, dict) or set(parameters) != set(self.choices):
            return None
        try:
            return {k: self.choices[k].index(parameters[k]) for k in self.choices}
        except ValueError:
            return None


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max())
    return z / z.sum()
