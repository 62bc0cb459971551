"""The ``loss_attack`` evaluator: a cross-validated logistic regression on the per-example loss.

Members are D_f, non-members as many test examples (the same held-out part of
the test split the ``mia`` evaluator judges on when its pool is drawn from it,
so the two attacks see the same examples). The attack used across the
unlearning literature (NeurIPS-2023 starting kit, SCRUB).
"""

from __future__ import annotations

import ml_collections
import numpy as np

from jaxunlearn import config as config_lib, membership, metrics
from jaxunlearn.errors import ConfigError
from jaxunlearn.evaluators import base


@base.register("loss_attack")
class LossAttack(base.Evaluator):
  title = "Loss attack on D_f"
  field_docs = {"folds": "cross-validation folds of the logistic regression",
                "seed": "seeds the non-members and the folds (-1: seed)"}

  def config(self):
    c = ml_collections.ConfigDict()
    c.folds = 5
    c.seed = -1                # -1: use config.seed
    return c

  def validate(self, cfg, info):
    if cfg.loss_attack.folds < 2:
      raise ConfigError(f"loss_attack.folds must be >= 2, got {cfg.loss_attack.folds}")
    if info.n_test < 2 or info.n_forget < 2:
      raise ConfigError("the loss attack needs at least 2 forget and 2 test examples")

  def evaluate(self, inp: base.EvalInputs) -> dict:
    c = inp.cfg.loss_attack
    seed = config_lib.resolve_seed(c.seed, inp.cfg)
    rng = np.random.default_rng(seed + 1)
    n = min(inp.forget_idx.size, inp.y_test.size)
    member_pos = np.sort(rng.permutation(inp.forget_idx.size)[:n])
    nonmember_idx = np.sort(rng.permutation(inp.y_test.size)[:n])
    y_member = inp.y_train[inp.forget_idx][member_pos]
    y_nonmember = inp.y_test[nonmember_idx]
    out = {}
    for name, logits in inp.logits.items():
      out[name] = membership.loss_attack(
          metrics.per_example_loss(logits["forget"][member_pos], y_member),
          metrics.per_example_loss(logits["test"][nonmember_idx], y_nonmember),
          folds=c.folds, seed=seed)
    out.update({"n_members": int(n), "n_nonmembers": int(n),
                "ideal": "balanced_acc 0.5 (members indistinguishable from unseen test examples)"})
    return out
