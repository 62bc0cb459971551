"""Hyperparameter selection: a method's whole grid as one vmapped run, one fixed objective.

Each method declares ``search_space``: the learning rate and its main knob,
at most :data:`MAX_POINTS` points in all. :func:`run_grid` runs every point as
one ``jax.vmap`` of :func:`jaxunlearn.unlearn.make_unlearn_fn` (one compile,
one call); :func:`grid_figures` evaluates every point's parameters
vectorised; :func:`objective` scores them against the retrained model.

The objective (DeepUnlearn's four terms, ``munl/hpsearch/objectives.py``,
summed with its weights)::

    (|RA_u - RA_r| + |FA_u - FA_r| + |HA_u - HA_r|) / 3 + |MIA_u - MIA_r|

RA, FA, HA: accuracy on D_r, on D_f and on held-out training examples never
trained on; MIA: balanced accuracy of the loss attack (D_f against as many
held-out examples). DeepUnlearn's fourth term is the attack's distance from
chance; here it is the distance from the retrained model's attack, which is
what a perfect unlearner matches. Lower is better; ties go to the first
point in grid order.

:func:`tune` runs it on a pipeline config: the original and retrained models
of that config's seed and forget set (cached in the work dir as usual), the
method's inputs, the grid, the figures. Select on a seed and forget set that
are never reported (``experiments/tune_methods.py``).
"""

from __future__ import annotations

import itertools
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxunlearn import config as config_lib, membership, methods, train as train_lib
from jaxunlearn import unlearn as unlearn_lib
from jaxunlearn.config import resolve_seed
from jaxunlearn.errors import ConfigError
from jaxunlearn.methods import helpers

__all__ = ["tune", "run_grid", "grid_points", "grid_hparams", "grid_figures", "objective",
           "MAX_POINTS", "TEMPERATURES"]

MAX_POINTS = 16
# Every method's output temperature is chosen from these by the same objective. A method
# that scales its output itself (``output_scale``) runs them as a grid axis of its own
# search space; for every other method the generic ``unlearn.output_temperature`` scales the
# grid's results after the run (the wrapper only rescales the returned output layer, so this
# is the run at that temperature, at the cost of an evaluation, not of a run).
TEMPERATURES = (1.0, 1.1, 1.2, 1.3, 1.5)


def grid_points(method) -> dict[str, np.ndarray]:
  """The method's search space as a flat grid: ``{name: array of length P}`` (row-major).

  Raises:
    ConfigError: no search space, an unknown name or more than MAX_POINTS points.
  """
  method = methods.as_method(method)
  space = dict(method.search_space)
  name = type(method).__name__
  if not space:
    raise ConfigError(f"method {name} declares no search_space")
  unknown = set(space) - {"learning_rate", *method.hparams}
  if unknown:
    raise ConfigError(f"method {name}: search_space names unknown hyperparameters "
                      f"{sorted(unknown)}")
  keys = list(space)
  points = list(itertools.product(*(space[k] for k in keys)))
  if len(points) > MAX_POINTS:
    raise ConfigError(f"method {name}: search_space has {len(points)} points, more than "
                      f"{MAX_POINTS}")
  for p in points:
    method.validate({**method.hparams, **{k: float(v) for k, v in zip(keys, p) if
                                          k != "learning_rate"}})
  return {k: np.asarray([p[i] for p in points], np.float32) for i, k in enumerate(keys)}


def grid_hparams(hparams: dict, grid: dict) -> dict:
  """``hparams`` broadcast to the grid's length, the grid's values in place."""
  n = len(next(iter(grid.values())))
  out = {k: jnp.full((n,), v, jnp.float32) for k, v in hparams.items()}
  out.update({k: jnp.asarray(v, jnp.float32) for k, v in grid.items()})
  return out


def run_grid(fn: unlearn_lib.UnlearnFn, params, inputs, key, hparams: dict, grid: dict):
  """Every grid point's run as one compiled, vmapped call of ``fn``.

  Returns:
    ``(params, metrics)`` with a leading axis of the grid's length; every
    point uses the same ``key`` (same batches), so points differ only by their
    hyperparameters.
  """
  hp = grid_hparams(hparams, grid)
  return jax.jit(jax.vmap(fn, in_axes=(None, None, None, 0)))(params, inputs, key, hp)


def _per_model(apply_fn, stacked, x, y):
  """Correctness and per-example loss of every stacked model on ``(x, y)``: ``(P, n)`` each."""
  def one(p):
    logits = helpers.batched_apply(apply_fn, p, x, 256).astype(jnp.float32)
    logp = jax.nn.log_softmax(logits)
    return (jnp.argmax(logits, -1) == y), -jnp.take_along_axis(logp, y[:, None], -1)[:, 0]
  x, y = jnp.asarray(x), jnp.asarray(y)
  correct, loss = jax.jit(jax.vmap(one))(stacked)
  return np.asarray(correct), np.asarray(loss)


def grid_figures(apply_fn, stacked, sets: dict, n_nonmembers: int | None = None,
                 seed: int = 0) -> list[dict]:
  """RA, FA, HA and the loss attack's balanced accuracy of every stacked model.

  Args:
    apply_fn: ``apply_fn(params, x) -> logits``.
    stacked: parameters with a leading model axis.
    sets: ``{"remain": (x, y), "forget": (x, y), "heldout": (x, y)}``.
    n_nonmembers: held-out examples used as the attack's non-members (default:
      as many as D_f, drawn with ``seed``).
  """
  out = {}
  for part, (x, y) in sets.items():
    out[part] = _per_model(apply_fn, stacked, x, y)
  n_f = out["forget"][0].shape[1]
  n_h = out["heldout"][0].shape[1]
  k = min(n_nonmembers or n_f, n_h)
  non = np.sort(np.random.default_rng(seed).permutation(n_h)[:k])
  figs = []
  for i in range(out["forget"][0].shape[0]):
    member, nonmember = out["forget"][1][i], out["heldout"][1][i][non]
    if np.all(np.isfinite(member)) and np.all(np.isfinite(nonmember)):
      attack = membership.loss_attack(member, nonmember, seed=seed)
    else:                    # a diverged run: no attack to fit, and the objective is inf
      attack = {"balanced_acc": float("nan")}
    figs.append({"acc_remain": float(out["remain"][0][i].mean()),
                 "acc_forget": float(out["forget"][0][i].mean()),
                 "acc_heldout": float(out["heldout"][0][i].mean()),
                 "mia": attack["balanced_acc"]})
  return figs


def objective(fig: dict, retrain: dict) -> float:
  """The selection objective (lower is better); see the module docstring."""
  acc = sum(abs(fig[k] - retrain[k]) for k in ("acc_remain", "acc_forget", "acc_heldout"))
  score = acc / 3.0 + abs(fig["mia"] - retrain["mia"])
  return score if np.isfinite(score) else float("inf")


def tune(cfg, workdir, *, progress: bool = False) -> dict:
  """Runs the method of ``cfg`` over its search space on ``cfg``'s seed and forget set.

  The original and retrained models are the pipeline's stages (trained once
  per work dir). The grid's other settings (epochs, optimizer, batch sizes,
  stop rule, the method's other hyperparameters) are ``cfg``'s: the grid runs
  the plan ``run`` would run, one point at a time, as one vmapped call split
  over the devices.

  Returns:
    ``{"method", "grid": [{hparams..., figures..., "objective"}], "retrain": figures,
    "best": {hparams}, "best_index", "grid_s", "compile_s", "seed", "forget_seed"}``.
  """
  from jaxunlearn import parallel, request as request_lib, stages
  # A copy with the progress setting: the caller's config is not changed.
  cfg = config_lib.mutable_copy(cfg)
  with cfg.unlocked():
    cfg.report.progress = progress
  with request_lib.open_request(cfg, workdir, wait=True) as req:
    if not req.splits.holdout_idx.size:
      raise ConfigError("tuning needs held-out examples; set --config.holdout.size (e.g. 0.05)")
    (plan,) = req.plans.values()
    s, original = req.splits, req.original
    retrain = stages.retrain_stage(req)
    reference = stages.reference_stage(req) if plan.needs_reference else None
    inputs = stages.method_inputs(req, plan, original, reference)
    fn = plan.make_fn(original.apply_fn, model=req.model, input_shape=req.data.input_shape,
                      batch_stats=original.batch_stats, n_forget=s.n_forget,
                      n_remain=int(s.remain_idx.size))
    grid = grid_points(plan.method)
    hp = grid_hparams(plan.hparams, grid)
    generic = unlearn_lib.GENERIC_TEMPERATURE in hp and \
        unlearn_lib.output_layer(original.params) is not None
    if generic:   # the grid runs unscaled; each temperature is applied to its results below
      hp[unlearn_lib.GENERIC_TEMPERATURE] = jnp.ones_like(hp[unlearn_lib.GENERIC_TEMPERATURE])
    key = req.key("unlearn")
    t0 = time.perf_counter()
    run = parallel.vmap_sharded(fn, req.mesh, in_axes=(None, None, None, 0)).compile(
        original.params, inputs, key, hp)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    stacked, metrics = jax.block_until_ready(run(original.params, inputs, key, hp))
    grid_s = time.perf_counter() - t0
    x, y = req.x_train, req.y_train
    sets = {part: (x[idx], y[idx]) for part, idx in
            (("remain", s.remain_idx), ("forget", s.forget_idx), ("heldout", s.holdout_idx))}
    apply_fn = original.apply_fn
    if fn.bn_train:   # each point carries its own batch statistics
      apply_fn = lambda v, x: train_lib.apply_model(req.model, v["params"], v["batch_stats"],  # noqa: E731
                                                    x, train=False)[0]
    temperatures = TEMPERATURES if generic else (None,)
    figs = [(t, fig) for t in temperatures for fig in grid_figures(
        apply_fn, stacked if t in (None, 1.0) else unlearn_lib.scale_output(stacked, t), sets,
        seed=req.cfg.seed)]
    ref_stack = jax.tree.map(lambda a: a[None], retrain.params)
    retrain_fig = grid_figures(retrain.apply_fn, ref_stack, sets, seed=req.cfg.seed)[0]
  final_loss = np.asarray(metrics["loss"])[:, -1, -1]
  rows = []
  n_points = len(final_loss)
  for j, (t, fig) in enumerate(figs):
    i = j % n_points
    point = {k: float(v[i]) for k, v in grid.items()}
    if t is not None:
      point[unlearn_lib.GENERIC_TEMPERATURE] = t
    score = objective(fig, retrain_fig) if np.isfinite(final_loss[i]) else float("inf")
    rows.append({**point, **fig, "objective": score})
  best = int(np.argmin([r["objective"] for r in rows]))
  keys = list(grid) + ([unlearn_lib.GENERIC_TEMPERATURE] if generic else [])
  u = plan.block
  return {"method": plan.name, "grid": rows, "retrain": retrain_fig,
          "best": {k: rows[best][k] for k in keys}, "best_index": best,
          "grid_s": grid_s, "compile_s": compile_s, "seed": req.cfg.seed,
          "forget_seed": resolve_seed(req.cfg.forget.seed, req.cfg),
          "settings": {"epochs": u.epochs, "optimizer": u.optimizer,
                       "momentum": u.momentum, "weight_decay": u.weight_decay,
                       "hparams": {k: v for k, v in plan.hparams.items()
                                   if k != "learning_rate"}}}
