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
from jaxunlearn.methods import base


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
  params = perturb(k_p, arr, hp, prep.get("perturb", "none"))
  return methods.Inputs(**fields), params


PREPARE = {"targets": prep_targets, "plain": prep_plain, "repair": prep_repair}
