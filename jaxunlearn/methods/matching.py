"""Matching: fine-tune the original toward per-example logits a retrained model would give.

The Datamodel Matching idea (Georgiev et al., "Attribute-to-Delete", ICLR 2025) on our
populations, with the paper's reference replaced by a teacher built for D_f:

* **The teacher** (:func:`jaxunlearn.attribution.teacher`) comes from an attribution store of
  ``teacher_models`` models trained on ``teacher_keep`` of the training rows, with D_f kept at
  a per-model rate: each D_f row's ten logits are fitted over the models on its own membership
  and the share of the rest of D_f each kept (quadratic), and read at "none of D_f". It is the
  logits a model retrained without D_f would give on average; the fit's residuals say how such
  models spread around it.
* **A run's target** on D_f row ``i`` is ``target_i + noise * residual_{k_i, i}``, ``k_i``
  drawn once per run and row from the run's key: each run lands as one retrained model would,
  so a population of runs keeps retraining's spread (the single protocol, where every run
  starts from the same original, needs this; ``noise=0`` gives every run the mean).
* **Per-row weights** (``weight_by="own"``): row ``i``'s squared error weighs
  ``forget_weight * clip(b_i / own_scale, own_floor, 1)``, ``b_i`` what the row's own
  membership adds to its phi in the store's fit (:func:`jaxunlearn.attribution.count_zero`'s
  ``own``). A row memorised as an exception (a flipped label: ``b`` of 5-14 phi units on
  quick_audit) is pulled hard; a row the others teach (a backdoor's triggered image, ``b``
  about 1) or one barely fitted (a random row, about 0.3) lightly. ``weight_by="own_step"``:
  the whole weight where ``b_i >= own_scale``, ``own_floor`` of it elsewhere. Both were meant
  to let one setting serve all three kinds of forget set; on the selection seed neither beat
  one weight per request beyond the draw-to-draw noise (``experiments/matching/README.md``,
  seventh look), and the same holds for ``anchor="teacher"`` below (fifth look).
* **Steps** (``epoch_over="steps"``: ``unlearn.steps`` or ``unlearn.retrain_fraction``):
  each takes the driver's ``forget_batch_size`` rows of D_f and ``remain_batch_size`` rows
  of D_r, and a step of the unlearn block's optimizer on
  ``forget_weight * mean_rows sum_c (z_ic - target_ic)^2 + anchor``, raw logits over all
  classes (log space: no saturation). The anchor keeps the rest: the same squared error
  toward the original's own logits on the D_r rows (``anchor="logits"``, the original is
  kept frozen in the run's state), the cross-entropy on D_r's labels (``"labels"``), or the
  squared error toward the store's own fit on D_r read at none of D_f
  (``"teacher"``, :func:`jaxunlearn.attribution.retain_teacher`; with a shared store, each
  row's IN models, :func:`jaxunlearn.attribution.in_teacher`), with a residual drawn per
  run and row as on D_f: the original's logits on D_r still carry D_f's influence (a
  label-flipped D_f costs accuracy on clean rows), and every run anchored on them agrees
  with every other on D_r, where retrained models do not.

**The margin itself** (``margin_weight``, 0 by default): the squared logit error on a D_f row
plus ``margin_weight * (phi(z_i) - phi(t_i))^2``, phi the row's margin at its label as trained
(what the audits read): the logits' error spreads over every class, so a run that stops short
of its targets leaves phi short too; this term pulls on phi directly.

**Past the target** (``overshoot``, 0 by default): a run's target on each D_f row becomes
``t_i + overshoot * (t_i - z0_i)``, ``z0_i`` the run's starting logits: runs that stop a
share of the way short of their targets (``experiments/matching/README.md``, twenty-third look)
land on them. Costs one forward pass over D_f per run (``n_forget / 3`` examples).

Cost per step: ``forget_batch_size + remain_batch_size`` examples, plus a third of
``remain_batch_size`` for the original's forward pass on the anchor rows (``"logits"``).
The retain teacher's fit is numpy over the store's logits, part of the teacher's time.
The store is the request's one-off cost, recorded with the unlearned stage
(``teacher``: its key and ``one_off_examples``); with a label-flip or backdoor transform
the training data change with D_f, so such a store belongs to one forget set
(:mod:`jaxunlearn.attribution`).

**A store that requests share** (``teacher_fit="out"`` or ``"pool"``): the store's models keep
every row at one rate (``"out"``), or keep every row outside a data transform's fixed pool and
forget a random part of the pool (``"pool"``, ``label_flip.index_file``), so the store does not
depend on D_f and every request on the training set (or on subsets of the pool) reads it; a
row's target is the mean logits of its OUT models, and a run draws one of their deviations
(:func:`jaxunlearn.attribution.out_teacher`). Its cost is then paid once, not per request.

A teacher fitted to the request's D_f serves that D_f only: U-LiRA, which forgets a different
subset per member, refuses it before any work. A shared store serves every member its own
teacher (:func:`jaxunlearn.attribution.member_teachers`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jaxunlearn.audits import phi as phi_lib
from jaxunlearn.errors import ConfigError
from jaxunlearn.methods import base, erase, helpers, salun

NAME = "matching"
TEACHER_MODELS = (64, 16, 32, 128, 256)
TEACHER_KEEP = (0.95, 0.9, 0.8, 0.5, 0.975, 0.99)
TAG_DRAW = 0x6D617463     # fold_in tag of the run key: the per-row residual draw on D_f
TAG_DRAW_REMAIN = 0x6D617472   # and on D_r (anchor="teacher")
TAG_SOLVE_ROWS = 0x6D617473    # the D_r rows the head solve anchors on (solve="head")
SOLVE_ROWS = (1024, 256, 512, 2048, 4096)
MARGIN_WEIGHTS = (0.0, 1.0, 3.0, 10.0, 30.0)
OVERSHOOTS = (0.0, 0.02, 0.05, 0.1, 0.2)


def margin_shift(target, drawn, y):
  """``[n, C]``: the move of the label's logit alone that gives ``target`` the margin of
  ``drawn`` (the other logits unchanged, so phi moves by exactly that amount)."""
  move = phi_lib.logit_confidence(drawn, y) - phi_lib.logit_confidence(target, y)
  return jax.nn.one_hot(y, target.shape[-1], dtype=target.dtype) * move[:, None]


def output_head(params) -> str:
  """The name of the model's output layer (its last top-level ``Dense``), for ``solve="head"``."""
  dense = erase.top_level_layers(params)["Dense"]
  if not dense or getattr(params[dense[-1]].get("kernel"), "ndim", 0) != 2:
    raise ConfigError("matching: solve='head' needs a model whose output layer is a top-level "
                      "Dense (kernel [features, classes]); this model has none, so use "
                      "solve='none'")
  return dense[-1]


def head_features(apply_fn, params, head: str, x):
  """The output layer's input on each row of ``x``, ``[n, d]``.

  The logits are affine in the output layer's kernel, so the gradient of one row's first logit
  with respect to the kernel's first column is that row's features; autodiff stops at the
  output layer, so this costs a forward pass over ``x``.
  """
  layer = params[head]

  def first_logit(w0, xi):
    p = type(params)({**params, head: {**layer, "kernel": layer["kernel"].at[:, 0].set(w0)}})
    return apply_fn(p, xi[None])[0, 0]
  return jax.vmap(jax.grad(first_logit), in_axes=(None, 0))(layer["kernel"][:, 0], x)


def solve_head(params, head: str, feats_forget, logits_forget, target, feats_anchor,
               weight, ridge):
  """The output layer moved in closed form toward ``target`` on D_f, anchored on D_r's features.

  With ``h`` a row's features and a 1 appended, the change ``D`` to the stacked kernel and bias
  minimises ``weight * mean_f |h_f D - (target_f - z_f)|^2 + mean_r |h_r D|^2 + ridge * s |D|^2``
  (``z_f`` the logits now, ``s`` the mean diagonal of ``mean_r h_r^T h_r``): D_f's logits go
  toward their targets while the anchor rows' logits move as little as possible.
  """
  ones = lambda h: jnp.concatenate([h, jnp.ones(h.shape[:1] + (1,), h.dtype)], -1)
  hf, hr = ones(feats_forget), ones(feats_anchor)
  gram_r = hr.T @ hr / hr.shape[0]
  a = weight * hf.T @ hf / hf.shape[0] + gram_r \
      + ridge * jnp.trace(gram_r) / gram_r.shape[0] * jnp.eye(gram_r.shape[0], dtype=hf.dtype)
  delta = jnp.linalg.solve(a, weight * hf.T @ (target - logits_forget) / hf.shape[0])
  layer = params[head]
  new = {**layer, "kernel": layer["kernel"] + delta[:-1], "bias": layer["bias"] + delta[-1]}
  return type(params)({**params, head: new})


@base.register(NAME)
class Matching(base.Method):
  """Logit matching toward a per-example teacher on D_f, anchored on D_r."""
  description = ("fine-tunes the original's logits on D_f toward an attribution teacher's "
                 "(a retrained model's, drawn per run), anchored on D_r")
  inputs = ("x_forget", "y_forget", "x_remain", "y_remain", "teacher_target", "teacher_residuals",
            "teacher_remain_target", "teacher_remain_residuals", "teacher_own_effect")
  hparams = {"forget_weight": 30.0, "noise": 0.8, "own_scale": 10.0, "own_floor": 0.03,
             "solve_weight": 10.0, "solve_ridge": 1e-3, "mask_ratio": 0.3}
  options = {"anchor": ("logits", "labels", "teacher"), "teacher_models": TEACHER_MODELS,
             "teacher_keep": TEACHER_KEEP,
             "teacher_fit": ("quadratic", "linear", "step", "out", "pool"),
             "teacher_spread": ("out", "pooled"), "noise_along": ("logits", "margin"),
             "margin_weight": MARGIN_WEIGHTS, "overshoot": OVERSHOOTS,
             "weight_by": ("request", "own", "own_step"), "draw_from": ("all", "none_kept"),
             "solve": ("none", "head"), "solve_rows": SOLVE_ROWS, "mask": ("none", "saliency")}
  hparam_docs = {
      "forget_weight": "weight of the squared logit error on D_f against the anchor's, > 0",
      "noise": "scale of the teacher's residual drawn per run and row (0: the fit itself), >= 0",
      "noise_along": "where the drawn residual goes: 'logits', every class's logit; 'margin', "
                     "only its change of the row's margin phi (z_y - logsumexp of the others, y "
                     "the label as trained), put on the label's logit, the others kept at the "
                     "fit (the spread phi needs, without fitting noise on the other classes)",
      "margin_weight": "weight of the squared error of a D_f row's margin phi (at its label as "
                       "trained) against its target's, added to the logits' squared error "
                       f"(one of {MARGIN_WEIGHTS}; 0: the logits alone)",
      "overshoot": "each D_f row's target moved past itself, away from the run's starting "
                   "logits: t + overshoot x (t - z0), for runs that stop short "
                   f"(one of {OVERSHOOTS}; 0: the target itself)",
      "own_scale": "weight_by='own' or 'own_step': the own-membership effect on phi (in phi "
                   "units) that gets the whole forget_weight, > 0",
      "own_floor": "weight_by='own' or 'own_step': the smallest share of forget_weight a row "
                   "gets, in (0, 1]",
      "weight_by": "'request': every D_f row weighs forget_weight; 'own': row i weighs "
                   "forget_weight x clip(b_i / own_scale, own_floor, 1), b_i what the row's own "
                   "membership adds to its phi in the store's fit; 'own_step': forget_weight "
                   "where b_i >= own_scale, else forget_weight x own_floor",
      "draw_from": "which store models' residuals a run draws: 'all', or 'none_kept' (those "
                   "that kept none of D_f, with teacher_fit='step')",
      "solve_weight": "solve='head': weight of D_f's squared error against the anchor rows' in "
                      "the closed-form move of the output layer, > 0",
      "solve_ridge": "solve='head': ridge on that move, relative to the anchor features' mean "
                     "square, >= 0",
      "solve": "'head': before the steps, move the output layer in closed form toward the run's "
               "targets on D_f, anchored on solve_rows rows of D_r (a forward pass over them and "
               "D_f); 'none': steps only",
      "mask": "'saliency': only the mask_ratio share of weights with the largest |gradient| of "
              "the run's D_f error at the start may move (SalUn's mask on matching's loss; a "
              "gradient over D_f); 'none': all",
      "mask_ratio": "mask='saliency': share of all weights that may move, in (0, 1]",
      "solve_rows": "solve='head': rows of D_r the closed-form move anchors on (at most |D_r|)",
      "anchor": "what keeps D_r: 'logits' (the original's own), 'labels' (cross-entropy) or "
                "'teacher' (the store's fit on D_r read at none of D_f, drawn per run; with "
                "teacher_fit='out' or 'pool', each D_r row's IN models, one drawn per run, "
                "attribution.in_teacher)",
      "teacher_models": "models in the teacher's attribution store (its one-off cost)",
      "teacher_spread": "teacher_fit='out' or 'pool': the residuals a run draws on a row are its "
                        "OUT models' ('out'), or scaled to the geometric mean of their spread "
                        "and the row's IN spread put on the OUT scale ('pooled', "
                        "attribution.pooled_spread_scale)",
      "teacher_keep": "share of the training rows each store model trains on",
      "teacher_fit": "the fit over the store's models read at none of D_f ('step': quadratic "
                     "plus a jump between none and one other D_f row kept, on a store whose "
                     "rates put several models at none of D_f); 'out': each row's OUT models "
                     "in a store that keeps every row at teacher_keep, shared by every "
                     "request on the training set (attribution.out_teacher); 'pool': the same "
                     "OUT models in a store whose models each forget a random part of a data "
                     "transform's fixed pool (label_flip.index_file) and keep every other row "
                     "(set teacher_keep to 1 - |D_f| / n), shared by every request that "
                     "forgets a subset of the pool (attribution.draw_pool_masks)"}
  epoch_over = "steps"
  reads_forget_index = True
  keyed_when_set = ("noise_along", "margin_weight", "overshoot")
  search_space = {"learning_rate": (3e-3, 1e-2, 3e-2),
                  "forget_weight": (10.0, 30.0, 100.0)}

  def __init__(self, **options):
    super().__init__(**options)
    o = self.opts
    if o["teacher_fit"] in ("out", "pool") and (
        o["weight_by"] != "request" or o["draw_from"] != "all"):
      raise ConfigError(f"matching: teacher_fit={o['teacher_fit']!r} reads a shared store, which "
                        "has no fit at none of D_f for weight_by or draw_from; keep "
                        "weight_by='request' and draw_from='all', or choose another "
                        "teacher_fit")
    if o["teacher_spread"] != "out" and o["teacher_fit"] not in ("out", "pool"):
      raise ConfigError(f"matching: teacher_spread={o['teacher_spread']!r} scales the OUT "
                        "models' residuals of a shared store; set teacher_fit='out' or 'pool', "
                        "or teacher_spread='out'")
    if self.opts["draw_from"] == "none_kept" and self.opts["teacher_fit"] != "step":
      raise ConfigError("matching: draw_from='none_kept' draws from the store models that kept "
                        "none of D_f, which only teacher_fit='step' makes (its store puts "
                        "several models there); set teacher_fit='step' or draw_from='all'")

  def validate(self, hp):
    super().validate(hp)
    helpers.validate_range(hp, "forget_weight", 0.0, 1e6, low_open=True, method=NAME)
    helpers.validate_range(hp, "noise", 0.0, 10.0, method=NAME)
    helpers.validate_range(hp, "own_scale", 0.0, 1e6, low_open=True, method=NAME)
    helpers.validate_range(hp, "own_floor", 0.0, 1.0, low_open=True, method=NAME)
    helpers.validate_range(hp, "solve_weight", 0.0, 1e6, low_open=True, method=NAME)
    helpers.validate_range(hp, "solve_ridge", 0.0, 1e6, method=NAME)
    helpers.validate_range(hp, "mask_ratio", 0.0, 1.0, low_open=True, method=NAME)

  def teacher_spec(self):
    o = self.opts
    step = o["teacher_fit"] == "step"
    rates = {"step": "zero", "out": "", "pool": "pool"}.get(o["teacher_fit"], "uniform")
    return {"num_models": int(o["teacher_models"]), "keep_fraction": float(o["teacher_keep"]),
            "degree": 1 if o["teacher_fit"] == "linear" else 2, "step": step,
            "rates": rates, "draw_from": o["draw_from"], "spread": o["teacher_spread"],
            "fields": {"keep_fraction": "teacher_keep", "num_models": "teacher_models"}}

  def used_inputs(self):
    unread = set()
    if self.opts["anchor"] != "teacher":
      unread |= {"teacher_remain_target", "teacher_remain_residuals"}
    if self.opts["weight_by"] == "request":
      unread.add("teacher_own_effect")
    if self.opts["noise_along"] == "logits" and not self.opts["margin_weight"]:
      unread.add("y_forget")
    return tuple(f for f in self.inputs if f not in unread)

  def step_cost(self, forget_batch_size, remain_batch_size):
    anchor = base.FORWARD_ONLY * remain_batch_size if self.opts["anchor"] == "logits" else 0.0
    return float(forget_batch_size + remain_batch_size) + anchor

  def solve_cost(self, n_forget, n_remain):
    """The head solve's forward passes: D_f and its anchor rows of D_r (0 without it)."""
    if self.opts["solve"] != "head":
      return 0.0
    return base.FORWARD_ONLY * float(n_forget + min(int(self.opts["solve_rows"]), n_remain))

  def cost(self, shape, hp):
    del hp
    steps = shape.epochs * shape.steps_per_epoch
    mask = float(shape.n_forget) if self.opts["mask"] == "saliency" else 0.0
    past = base.FORWARD_ONLY * float(shape.n_forget) if self.opts["overshoot"] else 0.0
    return float(steps) * self.step_cost(shape.forget_batch_size, shape.remain_batch_size) \
        + self.solve_cost(shape.n_forget, shape.n_remain) + mask + past

  def make(self, env):
    hp, inputs = env.hparams, env.inputs
    anchor = self.opts["anchor"]
    weight_by = self.opts["weight_by"]
    margin_weight = float(self.opts["margin_weight"])
    overshoot = float(self.opts["overshoot"])

    def draw(target, resid, tag, labels):
      """The run's targets: the fit plus ``noise`` times one model's residual per row (with
      ``noise_along="margin"`` only that residual's change of phi, on the label's logit)."""
      n = target.shape[0]
      pick = jax.random.randint(jax.random.fold_in(env.key, tag), (n,), 0, resid.shape[0])
      drawn = target + hp["noise"] * resid[pick, jnp.arange(n)]
      if self.opts["noise_along"] == "logits":
        return drawn
      return target + margin_shift(target, drawn, labels)

    def solved(params, run_target):
      """``solve="head"``: the output layer moved in closed form toward the run's targets."""
      head = output_head(params)
      n_r = inputs.x_remain.shape[0]
      rows = jax.random.permutation(jax.random.fold_in(env.key, TAG_SOLVE_ROWS),
                                    n_r)[:min(int(self.opts["solve_rows"]), n_r)]
      feats_f = head_features(env.apply_fn, params, head, inputs.x_forget)
      feats_r = head_features(env.apply_fn, params, head, inputs.x_remain[rows])
      return solve_head(params, head, feats_f, env.apply_fn(params, inputs.x_forget),
                        run_target, feats_r, hp["solve_weight"], hp["solve_ridge"])

    def init(params):
      run_target = draw(inputs.teacher_target, inputs.teacher_residuals, TAG_DRAW,
                        inputs.y_forget)
      if overshoot:
        z0_f = jax.lax.stop_gradient(env.apply_fn(params, inputs.x_forget))
        run_target = run_target + overshoot * (run_target - z0_f)
      run_anchor = draw(inputs.teacher_remain_target, inputs.teacher_remain_residuals,
                        TAG_DRAW_REMAIN, inputs.y_remain) if anchor == "teacher" else None
      start = solved(params, run_target) if self.opts["solve"] == "head" else params
      mask = None
      if self.opts["mask"] == "saliency":
        grads = jax.grad(lambda p: jnp.sum((env.apply_fn(p, inputs.x_forget) - run_target) ** 2)
                         )(start)
        mask = salun.saliency_mask(grads, hp["mask_ratio"])
      return base.UnlearnState(jnp.zeros((), jnp.int32), start, env.optimizer.init(start),
                               (params, run_target, run_anchor, mask))

    def step(state, batch):
      original, run_target, run_anchor, mask = state.extra
      t_f = run_target[batch.forget_index]
      z0_r = jax.lax.stop_gradient(env.apply_fn(original, batch.x_remain)) \
          if anchor == "logits" else None

      if weight_by != "request":
        own = inputs.teacher_own_effect[batch.forget_index]
        share = jnp.where(own >= hp["own_scale"], 1.0, hp["own_floor"]) \
            if weight_by == "own_step" else jnp.clip(own / hp["own_scale"], hp["own_floor"], 1.0)
        w_f = hp["forget_weight"] * share
      else:
        w_f = hp["forget_weight"] * jnp.ones(t_f.shape[:1])

      def loss_fn(params):
        z_f = env.apply_fn(params, batch.x_forget)
        err = jnp.sum((z_f - t_f) ** 2, -1)
        if margin_weight:
          y_f = inputs.y_forget[batch.forget_index]
          err = err + margin_weight * (phi_lib.logit_confidence(z_f, y_f)
                                       - phi_lib.logit_confidence(t_f, y_f)) ** 2
        forget = jnp.mean(err)
        z_r = env.apply_fn(params, batch.x_remain)
        if anchor == "logits":
          keep = jnp.mean(jnp.sum((z_r - z0_r) ** 2, -1))
        elif anchor == "teacher":
          keep = jnp.mean(jnp.sum((z_r - run_anchor[batch.remain_index]) ** 2, -1))
        else:
          keep = base.cross_entropy(z_r, batch.y_remain)
        return jnp.mean(w_f * err) + keep, (forget, keep)
      (loss, (forget, keep)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
      updates, opt_state = env.optimizer.update(grads, state.opt_state, state.params)
      if mask is not None:
        updates = jax.tree.map(lambda u, m: u * m, updates, mask)
      params = optax.apply_updates(state.params, updates)
      return state._replace(step=state.step + 1, params=params, opt_state=opt_state), \
          {"loss": loss, "forget_loss": forget, "anchor_loss": keep}
    return base.UpdateRule(init, step)
