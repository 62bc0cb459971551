"""Candidate unlearning methods (plugins) and the preparation of their inputs.

Each candidate is a registered :class:`jaxunlearn.methods.Method` plus a
``prepare`` function that runs inside the population member, before the
unlearning run: it computes the method's inputs from what a method may see
(D_f, D_r, the held-out split minus D_s, the original, the references it was
given) and may perturb the starting parameters (per-run randomness from its
key). :mod:`experiments.quality.lab` calls ``prepare`` and then the library's
``make_unlearn_fn``.

Carrier: the library's ``Inputs`` has no field for per-example targets on D_f
other than ``ref_probs`` (batched with the forget rows), so a target
log-probability vector per D_f example travels in ``ref_probs``. The library
would need a ``forget_targets`` input (or ``ref_logits``) to host these
methods without that reuse.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxunlearn import methods
from jaxunlearn.methods import base, helpers


@dataclasses.dataclass
class Arrays:
  """What ``prepare`` may read (inside the member, traced)."""
  apply_fn: Callable
  params: Any          # the original (this run's starting point)
  ref_params: Any      # [K, ...] stacked references (trained on D_s, never on D_f)
  x_f: Any
  y_f: Any
  x_r: Any
  y_r: Any
  x_c: Any             # held-out split minus D_s: seen by no original, no reference
  y_c: Any
  extra: dict          # diagnostics only (e.g. an ideal teacher); empty for methods
  init_fn: Callable


# --- divergences between the model and a target on D_f ------------------------------------


def phi_of(lp, y):
  """Logit-scaled confidence of class ``y`` from log-probabilities ``lp`` [..., C]."""
  lp_y = jnp.take_along_axis(lp, y[..., None], -1)[..., 0]
  mask = jax.nn.one_hot(y, lp.shape[-1], dtype=bool)
  rest = jax.nn.logsumexp(jnp.where(mask, -jnp.inf, lp), axis=-1)
  return lp_y - rest


def divergence(kind: str, logits, target_lp, y):
  """Per-example divergence of ``logits`` from target log-probabilities."""
  lp = jax.nn.log_softmax(logits.astype(jnp.float32), -1)
  if kind == "kl":
    p = jnp.exp(target_lp)
    return jnp.sum(p * (target_lp - lp), -1)
  if kind == "lp_mse":
    return jnp.mean((lp - target_lp) ** 2, -1)
  if kind == "logit_mse":
    c = lambda z: z - z.mean(-1, keepdims=True)  # noqa: E731
    return jnp.mean((c(lp) - c(target_lp)) ** 2, -1)
  if kind == "phi_mse":
    return (phi_of(lp, y) - phi_of(target_lp, y)) ** 2
  raise ValueError(kind)


@methods.register("q_match")
class Match(methods.Method):
  """fw * divergence(model on D_f, per-example target log-probs) + CE on D_r.

  Targets arrive in ``ref_probs`` (log-probabilities, see the module docstring).
  ``reduction``: ``mean`` over the forget batch, or ``sum`` (eq. 1's reading).
  """
  description = "match per-example target log-probs on D_f, CE on D_r"
  inputs = ("x_forget", "y_forget", "ref_probs", "x_remain", "y_remain")
  hparams = {"fw": 1.0}
  options = {"divergence": ("lp_mse", "kl", "logit_mse", "phi_mse"),
             "reduction": ("mean", "sum")}

  def loss(self, params, apply_fn, batch, hp, extra):
    d = divergence(self.opts["divergence"], apply_fn(params, batch.x_forget),
                   jax.lax.stop_gradient(batch.ref_probs), batch.y_forget)
    d = d.sum() if self.opts["reduction"] == "sum" else d.mean()
    ce = base.cross_entropy(apply_fn(params, batch.x_remain), batch.y_remain)
    return hp["fw"] * d + ce, {"div": d, "ce": ce}


@methods.register("q_repair")
class Repair(methods.Method):
  """Epochs over D_r: CE on D_r (+ kd * distillation from the original's logits on D_r)
  (+ fw * divergence from targets on D_f when targets are given).

  Meant to follow a perturbation of the original made by ``prepare`` (shrink,
  noise, partial or full re-initialisation): D_r's gradients regrow what D_r
  needs; what only D_f needed is not regrown.
  """
  description = "repair on D_r after a perturbation; optional distillation and D_f targets"
  inputs = ("x_forget", "y_forget", "ref_probs", "x_remain", "y_remain", "orig_logits_remain")
  hparams = {"fw": 0.0, "kd": 0.0, "kd_temp": 1.0}
  options = {"divergence": ("lp_mse", "kl", "logit_mse", "phi_mse")}
  epoch_over = "remain"

  def loss(self, params, apply_fn, batch, hp, extra):
    logits_r = apply_fn(params, batch.x_remain)
    ce = base.cross_entropy(logits_r, batch.y_remain)
    total, aux = ce, {"ce": ce}
    if batch.orig_logits_remain is not None:
      t = hp["kd_temp"]
      kd = base.kl_divergence(jax.nn.softmax(batch.orig_logits_remain / t, -1), logits_r / t)
      total = total + hp["kd"] * kd
      aux["kd"] = kd
    if batch.ref_probs is not None:
      d = divergence(self.opts["divergence"], apply_fn(params, batch.x_forget),
                     jax.lax.stop_gradient(batch.ref_probs), batch.y_forget).mean()
      total = total + hp["fw"] * d
      aux["div"] = d
    return total, aux


@methods.register("q_ftx")
class FinetuneErase(methods.Method):
  """CE on D_r every step, plus, during the first ``erase_until`` share of the run,
  ``fw`` times a term on D_f that erases the memorised label:

  * ``ascent``: -CE(x_f, y_f) on the examples whose phi is still above ``phi_stop``;
  * ``uniform``: CE to the uniform distribution over the classes other than y_f;
  * ``target``: ``divergence`` from per-example target log-probs (``ref_probs``);
  * ``reflabel``: CE with the target's arg-max class (the reference's predicted label).

  With a high learning rate under a cosine schedule and a fresh Adam state, the
  first steps perturb every weight; the decay then re-converges on D_r.
  """
  description = "fine-tune on D_r with a bounded erase term on D_f early in the run"
  inputs = ("x_forget", "y_forget", "ref_probs", "x_remain", "y_remain")
  hparams = {"fw": 1.0, "erase_until": 0.25, "phi_stop": -5.0}
  options = {"erase": ("ascent", "uniform", "target", "reflabel", "none"),
             "divergence": ("lp_mse", "kl", "logit_mse", "phi_mse")}
  epoch_over = "remain"

  def loss(self, params, apply_fn, batch, hp, extra):
    ce = base.cross_entropy(apply_fn(params, batch.x_remain), batch.y_remain)
    kind = self.opts["erase"]
    if kind == "none":
      return ce, {"ce": ce}
    logits_f = apply_fn(params, batch.x_forget)
    lp = jax.nn.log_softmax(logits_f.astype(jnp.float32), -1)
    y = batch.y_forget
    if kind == "ascent":
      active = jax.lax.stop_gradient(phi_of(lp, y) > hp["phi_stop"]).astype(jnp.float32)
      term = jnp.sum(active * jnp.take_along_axis(lp, y[:, None], -1)[:, 0]) / \
          jnp.maximum(1.0, active.sum())
    elif kind == "uniform":
      others = 1.0 - jax.nn.one_hot(y, lp.shape[-1])
      term = -jnp.mean(jnp.sum(others * lp, -1) / others.sum(-1))
    elif kind == "target":
      term = divergence(self.opts["divergence"], logits_f,
                        jax.lax.stop_gradient(batch.ref_probs), y).mean()
    else:   # reflabel
      lab = jnp.argmax(batch.ref_probs, -1)
      term = -jnp.mean(jnp.take_along_axis(lp, lab[:, None], -1)[:, 0])
    on = (batch.progress < hp["erase_until"]).astype(jnp.float32)
    return ce + on * hp["fw"] * term, {"ce": ce, "erase": term}


def own_optimizer(env, hp, kind: str):
  """Adam (or SGD with momentum 0.9) under a warm-up + cosine schedule of its own:
  peak ``learning_rate``, linear warm-up over ``warmup`` of the run, cosine decay to
  ``end_frac`` times the peak. (The library's schedules decay to 0 and have no warm-up.)"""
  import optax
  total = jnp.minimum(max(1, env.epochs * env.steps_per_epoch), hp.get("max_steps", 1e9))
  peak = hp["learning_rate"]
  warm = jnp.maximum(1.0, hp["warmup"] * total)

  def schedule(step):
    step = step.astype(jnp.float32)
    w = jnp.minimum(1.0, (step + 1.0) / warm)
    t = jnp.clip((step - warm) / jnp.maximum(1.0, total - warm), 0.0, 1.0)
    cos = hp["end_frac"] + (1.0 - hp["end_frac"]) * 0.5 * (1.0 + jnp.cos(jnp.pi * t))
    return peak * jnp.where(step < warm, w, cos)
  if kind == "adam":
    return optax.adam(schedule)
  return optax.sgd(schedule, momentum=0.9)


@methods.register("q_recon")
class Reconverge(methods.Method):
  """Re-convergence on D_r with its own optimizer and schedule (see :func:`own_optimizer`),
  plus an optional early erase term on D_f (as ``q_ftx``).

  A fresh Adam state at a high peak learning rate moves every weight by about the
  learning rate in the first steps (a perturbation the size of the weights), and the
  decay re-converges on D_r; what only D_f needed is not regrown.
  """
  description = "re-converge on D_r from the original under a high-peak schedule"
  inputs = ("x_forget", "y_forget", "ref_probs", "x_remain", "y_remain", "orig_logits_remain")
  hparams = {"fw": 0.0, "erase_until": 0.25, "phi_stop": -5.0, "warmup": 0.0,
             "end_frac": 0.0, "wd": 0.0, "tau": 1.0, "kd": 0.0, "kd_temp": 1.0,
             "kd_scale": 1.0, "ema": 0.0}
  options = {"erase": ("none", "ascent", "uniform", "target", "reflabel"),
             "divergence": ("lp_mse", "kl", "logit_mse", "phi_mse"),
             "opt": ("adam", "sgd")}
  epoch_over = "remain"

  def make(self, env):
    ftx = FinetuneErase(erase=self.opts["erase"], divergence=self.opts["divergence"])
    opt = own_optimizer(env, env.hparams, self.opts["opt"])

    def init(params):
      return base.UnlearnState(jnp.zeros((), jnp.int32), params, opt.init(params), params)

    def step(state, batch):
      def loss_fn(p):
        loss, aux = ftx.loss(p, env.apply_fn, batch, env.hparams, ())
        if batch.orig_logits_remain is not None:
          # distillation from the original on D_r (its logits times kd_scale, at kd_temp)
          t = env.hparams["kd_temp"]
          teacher = jax.nn.softmax(batch.orig_logits_remain * env.hparams["kd_scale"] / t, -1)
          kd = base.kl_divergence(teacher, env.apply_fn(p, batch.x_remain) / t) * t * t
          loss = loss + env.hparams["kd"] * kd
          aux = {**aux, "kd": kd}
        return loss, aux
      (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
      updates, opt_state = opt.update(grads, state.opt_state, state.params)
      import optax
      params = optax.apply_updates(state.params, updates)
      params = jax.tree.map(lambda p: p * (1.0 - env.hparams["wd"]), params)
      # an exponential moving average of the weights (ema = 0: the weights themselves)
      d = env.hparams["ema"]
      ema = jax.tree.map(lambda e, p: d * e + (1.0 - d) * p, state.extra, params)
      return state._replace(step=state.step + 1, params=params, opt_state=opt_state,
                            extra=ema), {"loss": loss, **aux}

    def finish(state):
      return scale_last_layer(state.extra, env.hparams["tau"])
    return base.UpdateRule(init, step, finish=finish)


def scale_last_layer(params, tau):
  """Multiplies the last layer's weights and bias by ``tau``: logits * tau (a temperature
  1 / tau), and the model stays the same architecture."""
  last = sorted(params)[-1]
  return {**params, last: jax.tree.map(lambda a: a * tau, params[last])}


@methods.register("q_is")
class ImportanceRetrain(methods.Method):
  """Training on D_r from ``prepare``'s start with loss-proportional importance sampling.

  Every step draws ``is_batch`` rows of D_r with probability
  ``p_i = (1 - mix) * l_i / sum(l) + mix / n`` (``l_i``: the last known CE of row i)
  and weights each by ``1 / (n p_i)``, so the expected gradient is the full-batch one;
  late in training, when a few hard rows carry the loss, this emulates a uniform batch
  of many more rows. Losses of the drawn rows are updated for free; all of them are
  recomputed (a forward pass over D_r) every ``refresh`` steps (none at the start nor at
  the end: ``floor((T - 1) / refresh)`` passes in a run of T steps). The first
  ``warm_steps`` steps draw rows uniformly (weights 1). Adam at a constant
  ``learning_rate`` (the retraining recipe's optimizer); ``tau`` scales the logits at
  the end. The library's own remain batch only sets the number of steps.
  """
  description = "retraining on D_r with loss-proportional importance sampling"
  inputs = ("x_remain", "y_remain")
  hparams = {"mix": 0.2, "refresh": 200.0, "warm_steps": 0.0, "tau": 1.0,
             "warmup": 0.0, "end_frac": 1.0, "max_steps": 1e9, "alpha": 1.0,
             "early_steps": 1e9, "late_batch": 1e9, "recipe_epochs": 20.0,
             "recipe_batch": 64.0}
  options = {"batch": ("16", "8", "12", "24", "32", "64", "6", "10", "4", "5"),
             "steps": ("max_steps", "recipe")}
  epoch_over = "remain"

  def make(self, env):
    import optax
    hp = env.hparams
    x, y = env.inputs.x_remain, env.inputs.y_remain
    n = x.shape[0]
    b = int(self.opts["batch"])
    if self.opts["steps"] == "recipe":
      # as many steps as retraining takes: recipe_epochs passes of floor(n / recipe_batch)
      hp = {**hp, "max_steps": hp["recipe_epochs"] * jnp.floor(n / hp["recipe_batch"])}
    opt = own_optimizer(env, hp, "adam")

    def all_losses(params):
      lg = helpers.batched_apply(env.apply_fn, params, x)
      return optax.softmax_cross_entropy_with_integer_labels(lg.astype(jnp.float32), y)

    total = env.epochs * env.steps_per_epoch

    def init(params):
      # no pass at the start: from a fresh initialisation every row has about the same
      # loss, so the first refresh's draws are uniform
      return base.UnlearnState(jnp.zeros((), jnp.int32), params, opt.init(params),
                               jnp.ones((n,), jnp.float32))

    def step(state, batch):
      losses = state.extra
      k = jax.random.fold_in(env.key, state.step)
      warm = state.step < hp["warm_steps"]
      sc = jnp.power(jnp.maximum(losses, 1e-6), hp["alpha"])
      p_is = (1.0 - hp["mix"]) * sc / jnp.maximum(sc.sum(), 1e-12) + hp["mix"] / n
      p = jnp.where(warm, jnp.full((n,), 1.0 / n), p_is)
      rows = jax.random.choice(k, n, (b,), replace=True, p=p)
      w = 1.0 / (n * p[rows])
      # a batch-size schedule: the first ``early_steps`` steps use all b rows, later steps
      # only the first ``late_batch`` (the rest get weight 0 and are not counted as cost)
      used = jnp.where(state.step < hp["early_steps"], b, hp["late_batch"])
      w = w * (jnp.arange(b) < used) * (b / used)

      def loss_fn(params):
        lg = env.apply_fn(params, x[rows]).astype(jnp.float32)
        per = optax.softmax_cross_entropy_with_integer_labels(lg, y[rows])
        return jnp.mean(w * per), per
      (loss, per), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
      updates, opt_state = opt.update(grads, state.opt_state, state.params)
      params = optax.apply_updates(state.params, updates)
      used_rows = jnp.arange(b) < used
      losses = losses.at[rows].set(jnp.where(used_rows, jax.lax.stop_gradient(per),
                                             losses[rows]))
      last = jnp.minimum(total, hp["max_steps"])
      refresh = jnp.logical_and(
          (state.step + 1) % jnp.maximum(1, hp["refresh"].astype(jnp.int32)) == 0,
          state.step + 1 < last)
      losses = jax.lax.cond(refresh, lambda: all_losses(params), lambda: losses)
      # steps past max_steps change nothing (the run's length does not depend on |D_r|)
      active = state.step < hp["max_steps"]
      keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(active, a, b), new, old)  # noqa: E731
      return state._replace(step=state.step + 1, params=keep(params, state.params),
                            opt_state=keep(opt_state, state.opt_state),
                            extra=keep(losses, state.extra)), {"loss": loss}

    def finish(state):
      return scale_last_layer(state.params, hp["tau"])
    return base.UpdateRule(init, step, finish=finish)


# --- preparation: targets, calibration, per-run randomness ---------------------------------


def perturb(key, arr: "Arrays", hp, mode: str):
  """Per-run perturbation of the original's parameters.

  modes: ``none``; ``shrink`` (theta <- shrink * theta + wnoise * std(leaf) * xi,
  every leaf); ``reinit_frac`` (each weight replaced by a fresh initial value with
  probability ``reset``); ``reinit_head`` (the last layer fresh, the rest shrunk and
  noised as ``shrink``); ``reinit_all`` (a fresh model).
  """
  params = arr.params
  if mode == "none":
    return params
  k_init, k_noise, k_mask = jax.random.split(key, 3)
  fresh = arr.init_fn(k_init)
  leaves, tree = jax.tree.flatten(params)
  f_leaves = jax.tree.leaves(fresh)
  n = len(leaves)
  kn = jax.random.split(k_noise, n)
  km = jax.random.split(k_mask, n)
  if mode == "reinit_all":
    return fresh
  if mode == "reference":       # start from the (first) reference model
    return jax.tree.map(lambda a: a[0], arr.ref_params)
  out = []
  for i, (p, f) in enumerate(zip(leaves, f_leaves)):
    if mode in ("shrink", "reinit_head"):
      q = hp.get("shrink", 1.0) * p + hp.get("wnoise", 0.0) * jnp.std(p) * \
          jax.random.normal(kn[i], p.shape)
      out.append(q)
    elif mode == "reinit_frac":
      m = jax.random.bernoulli(km[i], hp["reset"], p.shape)
      out.append(jnp.where(m, f, p))
    else:
      raise ValueError(mode)
  params = jax.tree.unflatten(tree, out)
  if mode == "reinit_head":
    last = sorted(params)[-1]
    params = {**params, last: fresh[last]}
  return params


def ref_logits(arr: Arrays, x):
  """``[K, n, C]`` logits of the K references on ``x``."""
  return jax.vmap(lambda p: arr.apply_fn(p, x))(arr.ref_params)


def center(z):
  return z - z.mean(-1, keepdims=True)


def fit_affine(r, o):
  """Least squares ``center(o) ~ a * center(r) + b`` (one slope, a bias per class).

  ``r``, ``o``: ``[n, C]`` logits of a reference and of the original on examples
  neither saw. Returns ``(a, b)``.
  """
  rc, oc = center(r), center(o)
  rm, om = rc.mean(0), oc.mean(0)
  rd, od = rc - rm, oc - om
  a = jnp.sum(rd * od) / jnp.maximum(jnp.sum(rd * rd), 1e-12)
  return a, om - a * rm


def target_logits(arr: Arrays, prep: dict):
  """Per-example target logits on D_f ``[n_f, C]`` (and per-example spread ``[n_f]``)."""
  src = prep.get("target", "ref")
  if src == "ideal":             # DIAGNOSTIC: mean retrained logits (never a method)
    return arr.extra["ideal_logits"], arr.extra["ideal_sd"]
  rf = center(ref_logits(arr, arr.x_f))           # [K, n_f, C]
  calib = prep.get("calib", "none")
  if calib == "affine":
    rc = center(ref_logits(arr, arr.x_c))         # [K, n_c, C]
    oc = arr.apply_fn(arr.params, arr.x_c)
    a, b = fit_affine(rc.mean(0), oc)
    t = a * rf.mean(0) + b
    sd = a * rf.std(0).mean(-1)
  elif calib == "none":
    t = rf.mean(0)
    sd = rf.std(0).mean(-1)
  else:
    raise ValueError(calib)
  return t, sd


def prep_targets(key, arr: Arrays, hp, prep: dict):
  """Targets for ``q_match`` (log-probs in ``ref_probs``), with per-run logit noise
  ``hp['tnoise']`` (std, logits) and per-run weight noise ``hp['wnoise']`` (relative)."""
  k_t, k_w = jax.random.split(key)
  t, _ = target_logits(arr, prep)
  if "tnoise" in hp:
    t = t + hp["tnoise"] * jax.random.normal(k_t, t.shape)
  params = arr.params
  if "wnoise" in hp:
    leaves, tree = jax.tree.flatten(params)
    ks = jax.random.split(k_w, len(leaves))
    leaves = [p + hp["wnoise"] * jnp.std(p) * jax.random.normal(k, p.shape)
              for p, k in zip(leaves, ks)]
    params = jax.tree.unflatten(tree, leaves)
  inputs = methods.Inputs(x_forget=arr.x_f, y_forget=arr.y_f,
                          ref_probs=jax.nn.log_softmax(t, -1), x_remain=arr.x_r,
                          y_remain=arr.y_r)
  return inputs, params


def prep_plain(key, arr: Arrays, hp, prep: dict):
  """D_f and D_r only (for methods without targets)."""
  return methods.Inputs(x_forget=arr.x_f, y_forget=arr.y_f, x_remain=arr.x_r,
                        y_remain=arr.y_r), arr.params


def saliency(arr: Arrays, prep: dict, n_remain_batches: int = 16, chunk: int = 10):
  """Per-weight importance of D_f relative to D_r (a pytree like the params).

  ``imp_f``: mean over D_f of squared per-example gradients of CE with D_f's labels;
  ``imp_r``: mean over ``n_remain_batches`` batches of 64 rows of D_r of the squared
  batch gradient. ``prep['sal']``: ``ratio`` (imp_f / (imp_r + tiny), SSD's quantity)
  or ``grad_f`` (imp_f alone, SalUn's).
  """
  def ce(p, x, y):
    return base.cross_entropy(arr.apply_fn(p, x), y)
  params = arr.params
  n_f = arr.x_f.shape[0]
  pad = (-n_f) % chunk
  xf = jnp.concatenate([arr.x_f, arr.x_f[:pad]]) if pad else arr.x_f
  yf = jnp.concatenate([arr.y_f, arr.y_f[:pad]]) if pad else arr.y_f
  w = jnp.concatenate([jnp.ones(n_f), jnp.zeros(pad)])
  xs = xf.reshape(-1, chunk, *xf.shape[1:])
  ys, ws = yf.reshape(-1, chunk), w.reshape(-1, chunk)

  def body(acc, inp):
    x, y, wt = inp
    g = jax.vmap(lambda xi, yi: jax.grad(ce)(params, xi[None], yi[None]))(x, y)
    g2 = jax.tree.map(lambda a: jnp.einsum("b,b...->...", wt, a * a), g)
    return jax.tree.map(jnp.add, acc, g2), None
  zero = jax.tree.map(jnp.zeros_like, params)
  imp_f, _ = jax.lax.scan(body, zero, (xs, ys, ws))
  imp_f = jax.tree.map(lambda a: a / n_f, imp_f)
  if prep.get("sal", "ratio") == "grad_f":
    return imp_f
  n_r = arr.x_r.shape[0]
  rows = (jnp.arange(n_remain_batches * 64) * 7919) % n_r   # a fixed spread of D_r rows
  xr, yr = arr.x_r[rows].reshape(n_remain_batches, 64, *arr.x_r.shape[1:]), \
      arr.y_r[rows].reshape(n_remain_batches, 64)

  def body_r(acc, inp):
    g = jax.grad(ce)(params, *inp)
    return jax.tree.map(lambda a, b: a + b * b, acc, g), None
  imp_r, _ = jax.lax.scan(body_r, zero, (xr, yr))
  imp_r = jax.tree.map(lambda a: a / n_remain_batches, imp_r)
  return jax.tree.map(lambda f, r: f / (r + 1e-12), imp_f, imp_r)


def salient_reset(key, arr: Arrays, hp, prep: dict):
  """Resets the ``hp['q']`` share of weights (over the whole network) with the highest
  saliency: ``prep['reset']`` ``reinit`` (fresh initial values, this run's key),
  ``noise`` (+ ``hp['rnoise']`` * std(leaf) * N(0, 1)) or ``zero``."""
  sal = saliency(arr, prep)
  flat = jnp.concatenate([a.ravel() for a in jax.tree.leaves(sal)])
  thr = jnp.quantile(flat, 1.0 - hp["q"])
  k_init, k_noise = jax.random.split(key)
  fresh = arr.init_fn(k_init)
  leaves, tree = jax.tree.flatten(arr.params)
  s_leaves, f_leaves = jax.tree.leaves(sal), jax.tree.leaves(fresh)
  kn = jax.random.split(k_noise, len(leaves))
  out = []
  mode = prep.get("reset", "reinit")
  for p, sl, f, k in zip(leaves, s_leaves, f_leaves, kn):
    m = sl >= thr
    if mode == "reinit":
      new = f
    elif mode == "noise":
      new = p + hp["rnoise"] * jnp.std(p) * jax.random.normal(k, p.shape)
    else:
      new = jnp.zeros_like(p)
    out.append(jnp.where(m, new, p))
  return jax.tree.unflatten(tree, out)


def prep_repair(key, arr: Arrays, hp, prep: dict):
  """For ``q_repair``: a perturbed start (``prep['perturb']``), the original's logits on D_r
  when ``prep['kd']``, targets on D_f when ``prep['target']`` is set."""
  k_p, k_t = jax.random.split(key)
  fields = {"x_remain": arr.x_r, "y_remain": arr.y_r}
  if prep.get("kd"):
    fields["orig_logits_remain"] = arr.apply_fn(arr.params, arr.x_r)
  if prep.get("target"):
    t, _ = target_logits(arr, prep)
    if "tnoise" in hp:
      t = t + hp["tnoise"] * jax.random.normal(k_t, t.shape)
    fields.update(x_forget=arr.x_f, y_forget=arr.y_f, ref_probs=jax.nn.log_softmax(t, -1))
  if prep.get("perturb") == "salient":
    params = salient_reset(k_p, arr, hp, prep)
  else:
    params = perturb(k_p, arr, hp, prep.get("perturb", "none"))
  return methods.Inputs(**fields), params


PREPARE = {"targets": prep_targets, "plain": prep_plain, "repair": prep_repair}
