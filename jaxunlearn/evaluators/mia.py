"""The ``mia`` evaluator: Shokri et al.'s shadow-model membership inference on D_f.

``mia.num_shadows`` shadow models of the target's architecture train under
one ``jax.vmap`` (split over the devices), each on its own random half of a
shadow pool drawn from the test split; the attack (one logistic regression
per class, :mod:`jaxunlearn.membership`) then judges every model on D_f (members)
against as many held-out test images (non-members). The shadows are a cached
stage, ``checkpoints/shadows-<hash>``.
"""

from __future__ import annotations

import sys

import jax
import ml_collections
import numpy as np

from jaxunlearn import config as config_lib, hashing, membership, splits as splits_lib
from jaxunlearn import train as train_lib
from jaxunlearn.errors import ConfigError
from jaxunlearn.evaluators import base


def _seed(cfg) -> int:
  return config_lib.resolve_seed(cfg.mia.seed, cfg)


def pool_size(cfg, n_test: int) -> int:
  """Number of test images in the shadow pool (``mia.pool_size``: fraction or count).

  Raises:
    ConfigError: the pool would have fewer than 4 images (2 in, 2 out per
      shadow) or leave fewer than 2 held-out test images.
  """
  size = cfg.mia.pool_size
  if size <= 0:
    raise ConfigError(f"mia.pool_size must be > 0 (a fraction < 1 of the test split or a "
                      f"count), got {size}")
  pool_n = int(round(size * n_test)) if size < 1 else int(size)
  if pool_n < 4:
    raise ConfigError(f"mia.pool_size {size} gives {pool_n} shadow-pool images; use at "
                      "least 4 (a fraction < 1 of the test split or a count)")
  if n_test - pool_n < 2:
    raise ConfigError(
        f"mia.pool_size {size} takes {pool_n} of {n_test} test images and leaves too few "
        "held-out non-members; use a smaller mia.pool_size")
  return pool_n


def split_test_set(cfg, n_test: int) -> tuple[np.ndarray, np.ndarray]:
  """Test positions of the shadow pool and of the held-out evaluation part.

  The target trains on every training image, so the shadow pool comes from
  the test split; the rest of the test split is kept apart so the non-members
  the target is judged on never helped fit the attack.
  """
  pool_n = pool_size(cfg, n_test)
  perm = np.random.default_rng(_seed(cfg)).permutation(n_test)
  return np.sort(perm[:pool_n]), perm[pool_n:]


def shadow_epochs(cfg) -> int:
  return cfg.mia.shadow_epochs or cfg.train.epochs


def get_shadows(inp: base.EvalInputs, pool_idx: np.ndarray
                ) -> tuple[membership.Shadows, bool, str]:
  """Trains the shadows on the pool, or restores them from their cached stage."""
  cfg, m = inp.cfg, inp.cfg.mia
  spec = {"original": dict(inp.fingerprint), "num_shadows": m.num_shadows,
          "epochs": shadow_epochs(cfg), "batch_size": cfg.train.batch_size, "seed": _seed(cfg),
          "pool": "test", "pool_hash": splits_lib.index_hash(pool_idx)}
  stage = f"shadows-{hashing.spec_hash(spec)}"
  n_in = pool_idx.size // 2
  epochs = shadow_epochs(cfg)
  optimizer = train_lib.optimizer_for_rows(cfg.train, n_in, epochs)
  key = jax.random.key(_seed(cfg), impl="rbg")   # rbg: much faster init compile on CPU

  def abstract():
    target = jax.eval_shape(lambda k: jax.vmap(lambda kk: train_lib.init_state(
        inp.model, optimizer, kk, inp.input_shape))(jax.random.split(k, m.num_shadows)), key)
    return {"params": target.params, "batch_stats": target.batch_stats}

  def build():
    in_idx = membership.shadow_in_indices(_seed(cfg), m.num_shadows, pool_idx.size)
    driver = train_lib.resolve_driver(m.shadow_driver)
    if inp.progress:
      print(f"   shadows: training {m.num_shadows} models of {n_in} images, {epochs} epochs, "
            f"under one vmap ({driver} driver)", file=sys.stderr)
    shadows = membership.train_shadows(inp.model, optimizer, inp.input_shape, inp.x_test[pool_idx],
                                inp.y_test[pool_idx], in_idx, key, epochs=epochs,
                                batch_size=cfg.train.batch_size, driver=m.shadow_driver,
                                progress=inp.progress)
    meta = {"time_s": shadows.time_s, "compile_s": shadows.compile_s, "driver": driver,
            "in_idx": shadows.in_idx.tolist(), "pool_idx": pool_idx.tolist(),
            "losses": shadows.losses.tolist(), **spec}
    return {"params": shadows.params, "batch_stats": shadows.batch_stats}, meta

  tree, meta, reused = inp.cache.load_or_build(stage, build, abstract)
  shadows = membership.Shadows(tree["params"], tree.get("batch_stats") or {},
                        np.asarray(meta["in_idx"], np.int32), np.asarray(meta["losses"]),
                        meta["time_s"], meta["compile_s"])
  return shadows, reused, stage


@base.register("mia")
class ShokriMIA(base.Evaluator):
  title = "Membership inference on D_f"
  field_docs = {
      "num_shadows": "shadow models, trained together under one vmap",
      "shadow_epochs": "shadow training epochs (0: train.epochs)",
      "pool_size": "shadow pool drawn from the test split: a fraction < 1 or a count",
      "features": "attack features: sorted | unsorted | logit_conf (the first is unprefixed)",
      "shadow_driver": "auto | scan | loop: how shadow epochs run",
      "seed": "seeds the shadows and the attack (-1: seed)"}

  def config(self):
    c = ml_collections.ConfigDict()
    c.num_shadows = 8
    c.shadow_epochs = 0        # 0: train.epochs
    c.pool_size = 0.5          # shadow pool from the test split: < 1 fraction, >= 1 count
    c.features = ("sorted", "logit_conf")  # sorted | unsorted | logit_conf; first unprefixed
    c.shadow_driver = "auto"   # auto | scan | loop (train.resolve_driver)
    c.seed = -1                # -1: use config.seed
    return c

  def validate(self, cfg, info):
    m = cfg.mia
    if m.num_shadows < 1:
      raise ConfigError(f"mia.num_shadows must be a positive integer, got {m.num_shadows}")
    if m.shadow_epochs < 0:
      raise ConfigError(f"mia.shadow_epochs must be >= 0, got {m.shadow_epochs}")
    if m.shadow_driver not in train_lib.DRIVERS:
      raise ConfigError(f"mia.shadow_driver must be one of {train_lib.DRIVERS}, "
                        f"got {m.shadow_driver!r}")
    if not m.features:
      raise ConfigError(f"mia.features is empty; use some of {membership.FEATURES}")
    for f in m.features:
      if f not in membership.FEATURES:
        raise ConfigError(f"mia.features has unknown feature set {f!r}; use some of "
                          f"{membership.FEATURES}")
    pool_size(cfg, info.n_test)

  def evaluate(self, inp: base.EvalInputs) -> dict:
    cfg, m = inp.cfg, inp.cfg.mia
    seed = _seed(cfg)
    pool_idx, holdout_idx = split_test_set(cfg, inp.y_test.size)
    shadows, reused, stage = get_shadows(inp, pool_idx)
    y_pool = inp.y_test[pool_idx]
    s_logits = membership.shadow_logits(inp.model, shadows.params, shadows.batch_stats,
                                 inp.x_test[pool_idx], cfg.eval.batch_size)
    mask = shadows.in_mask(pool_idx.size)
    shadow_acc = [float(np.mean(np.argmax(s_logits[k][~mask[k]], -1) == y_pool[~mask[k]]))
                  for k in range(shadows.num_shadows)]
    flat_logits = s_logits.reshape(-1, s_logits.shape[-1])
    flat_labels = np.tile(y_pool, shadows.num_shadows)
    attacks = {kind: membership.fit_attack(flat_logits, flat_labels, mask.reshape(-1), kind,
                                           seed=seed)
               for kind in m.features}

    # Equal numbers of members (D_f) and held-out non-members.
    rng = np.random.default_rng(seed + 1)
    n_forget = inp.forget_idx.size
    n = min(n_forget, holdout_idx.size)
    member_pos = np.sort(rng.permutation(n_forget)[:n])
    nonmember_idx = holdout_idx[:n]
    y_member = inp.y_train[inp.forget_idx][member_pos]
    y_nonmember = inp.y_test[nonmember_idx]

    out = {}
    for name, logits in inp.logits.items():
      lm, ln = logits["forget"][member_pos], logits["test"][nonmember_idx]
      row = {}
      for i, (kind, attack) in enumerate(attacks.items()):
        figs = membership.attack_metrics(attack.score(lm, y_member), attack.score(ln, y_nonmember))
        row.update({(k if i == 0 else f"{kind}.{k}"): v for k, v in figs.items()})
      out[name] = row
    out.update({
        "features": ", ".join(f"{k} (unprefixed)" if i == 0 else k
                              for i, k in enumerate(m.features)),
        "shadow_pool": (f"test split: {pool_idx.size} of {inp.y_test.size} test images "
                        "(the target trained on every training image); the other "
                        f"{holdout_idx.size} are held out for non-members"),
        "n_members": int(n), "n_nonmembers": int(n),
        "num_shadows": shadows.num_shadows, "shadow_epochs": shadow_epochs(cfg),
        "shadow_train_size": int(shadows.in_idx.shape[1]),
        "shadow_test_acc_mean": float(np.mean(shadow_acc)),
        "shadow_test_acc_min": float(np.min(shadow_acc)),
        "shadow_train_s": float(shadows.time_s), "shadow_compile_s": float(shadows.compile_s),
        "shadows_reused": reused, "shadow_stage": stage,
    })
    if inp.transforms:
      out["note"] = (f"D_f was changed before training ({', '.join(inp.transforms)}): "
                     "features that use the label (logit_conf, unsorted) measure agreement "
                     "with those labels, which a model that never saw D_f lacks, so they can "
                     "fall far below 0.5 there")
    return out

  def summary(self, section: dict) -> str:
    values = [f"{name}={section[name]['balanced_acc']:.3f}"
              for name in ("original", "retrain", "unlearned") if name in section]
    return f"mia balanced_acc: {' '.join(values)}"

