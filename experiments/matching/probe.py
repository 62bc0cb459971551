"""Probe: per-example logit matching toward a population teacher, on quick_audit's MLP.

    python experiments/matching/probe.py --seed 100 --forget flip --K 64 --keep 0.8 \
        --variants "STEPS,LR,FORGET_ROWS,REMAIN_ROWS,FORGET_WEIGHT,NOISE,MODE[,RLOSS];..."

The research record of the first look at the Datamodel Matching idea (issue:
forgetting like retraining at a fiftieth of its cost), on the selection seed
only. It builds, in the work dir ``runs/matching/<forget><seed>``:

* the audit's ``retrain``, ``oracle`` and ``none`` populations (N = 32);
* an attribution population: K models, each on a random keep-mask of the
  training rows (keep fraction ``--keep``), recording logits on D_f; with
  ``--calib`` their parameters too, to fit one output temperature against
  the original on the test set;
* ``retrainz``: 32 more models on D_r recording logits on D_f, the teacher of
  the oracle-matching upper bound (independent of the scoring populations).

Each variant is a fine-tune of the original (single protocol) or of ``none``'s
member i (per-seed protocol): Adam, ``STEPS`` steps, each on ``FORGET_ROWS``
rows of D_f drawn uniformly toward their targets and ``REMAIN_ROWS`` rows of
D_r toward the starting model's own logits, loss ``FORGET_WEIGHT`` x MSE(D_f) +
MSE(D_r) on raw logits over all classes (``RLOSS`` 1: the D_r term is instead the
cross-entropy on D_r's labels). Targets on D_f (``MODE``): 0, the
starting model's logits plus the attribution estimate mean_OUT - mean_IN plus
``NOISE`` x an OUT model's residual drawn per example and run; 1, the OUT mean
plus the same residual; 2 (oracle matching, an upper bound, not a method), one
random ``retrainz`` model's logits per run; 3 (with ``--forget-rate uniform``),
the count-0 fit (each example's logits regressed over the K models on its own
membership and the share of the other D_f rows kept, quadratic, read at none of
D_f) plus ``NOISE`` x one model's residual of that fit. Printed per variant: the cost in
examples as a fraction of retraining's, and per protocol relative F, phi
median, spread ratio and test accuracy. Every variant tried and its figures:
``experiments/matching/README.md``.
"""
import json
import sys
import time
from pathlib import Path
import numpy as np
import jax, jax.numpy as jnp, optax

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from jaxunlearn import auditor as auditor_lib, populations as pops, request as request_lib  # noqa
from jaxunlearn import scripts, stages, train as train_lib  # noqa
from jaxunlearn.audits import epsilon as eps_lib, phi as phi_lib  # noqa

def main(argv=None) -> None:
  p = scripts.parser(__doc__.splitlines()[0])
  p.add_argument("--seed", type=int, default=100)
  p.add_argument("--forget", default="flip")
  p.add_argument("--K", type=int, default=64)
  p.add_argument("--keep", type=float, default=0.5)
  p.add_argument("--N", type=int, default=32)
  p.add_argument("--variants", default="")
  p.add_argument("--calib", type=int, default=1)
  p.add_argument("--forget-rate", default="", choices=("", "uniform"),
                 help="'uniform': D_f kept at a per-model rate (attribution.draw_rate_masks), "
                      "which MODE 3's count-0 targets need")
  args = p.parse_args(argv)

  from experiments.quality import lab  # noqa
  cfg = lab.make_config(args.seed, args.forget, holdout=0, n_models=args.N)
  cfg.audit.methods = ()
  cfg.audit.statistics = ("epsilon",)
  ROOT = REPO / "runs" / "matching"
  workdir = ROOT / f"{args.forget}{args.seed}"

  C = 10
  FIELDS = {f"z{c}": (lambda c: (lambda logits, y: logits[:, c]))(c) for c in range(C)}


  def logits_of(rec):
    return np.stack([rec[f"z{c}"] for c in range(C)], -1)  # [K, n, C]


  with request_lib.open_request(cfg, workdir, methods=[]) as req:
    aud = auditor_lib.Auditor(req)
    retrain = aud.train_population("retrain", aud.remain_rows)
    oracle = aud.train_population("oracle", aud.remain_rows)
    none = aud.train_population("none", aud.train_rows, keep_params=True)
    f_or = eps_lib.population_entry(oracle, retrain)["forgetting_quality"]
    print("oracle F", f_or, "none F", eps_lib.population_entry(none, retrain)["forgetting_quality"])
    # attribution population: K models on random keep masks of the training rows
    train_rows = np.asarray(aud.train_rows)
    rng = np.random.default_rng(1234)
    n_keep = int(round(args.keep * train_rows.size))
    if args.forget_rate:
      from jaxunlearn import attribution
      pos0 = {r: i for i, r in enumerate(train_rows)}
      keep_rate = attribution.draw_rate_masks(
          train_rows.size, np.array([pos0[r] for r in np.asarray(aud.forget_rows)]), args.K,
          args.keep, 1234)
      masks = np.stack([np.flatnonzero(k) for k in keep_rate])
    else:
      masks = np.stack([np.sort(rng.choice(train_rows.size, n_keep, replace=False)) for _ in range(args.K)])
    rows = train_rows[masks]
    opt = train_lib.optimizer_for_rows(cfg.train, n_keep, cfg.train.epochs)
    member = pops.train_member(req.model, opt, req.data.input_shape, epochs=int(cfg.train.epochs),
                               batch_size=int(cfg.train.batch_size), fields=FIELDS, keep_params=bool(args.calib))
    pop = pops.Population(name=f"attr{args.K}k{args.keep}{args.forget_rate}", size=args.K, member=member,
                          mapped=(jnp.asarray(rows, jnp.int32),),
                          shared=(aud.x_all, aud.y_all, aud.data),
                          spec={"proto": "attr", "K": args.K, "keep": args.keep, "seed": args.seed,
                                "fp": req.fingerprint,
                                **({"forget_rate": args.forget_rate} if args.forget_rate else {})},
                          fields=tuple(sorted(FIELDS.items())), driver="vmap", keep_params=bool(args.calib),
                          abstract_params=(req.abstract_variables()["params"], req.abstract_variables()["batch_stats"]) if args.calib else None)
    t0 = time.time()
    attr = pops.run_population(pop, jax.random.key(77), req.cache, n_audit=aud.n_audit,
                               chunk_size=32, progress=False)
    print("attr pop", time.time() - t0, "s")
    forget_rows = np.asarray(aud.forget_rows)
    pos = {r: i for i, r in enumerate(train_rows)}
    f_pos = np.array([pos[r] for r in forget_rows])
    in_mask = np.zeros((args.K, forget_rows.size), bool)
    for k in range(args.K):
      in_mask[k] = np.isin(f_pos, masks[k])
    Z = logits_of(attr)   # [K, n_f, C]
    orig0 = req.original
    ap0 = train_lib.eval_apply_fn(req.model, orig0.batch_stats)
    T = 1.0
    if args.calib:
      zt = np.asarray(jax.vmap(lambda pp: ap0(pp, aud.data.x_test))(attr["params"]))
      z0t = np.asarray(ap0(orig0.params, aud.data.x_test))
      zt = zt - zt.mean(-1, keepdims=True); z0c = z0t - z0t.mean(-1, keepdims=True)
      T = float((zt * z0c[None]).sum() / (zt ** 2).sum())
      print("temperature T", T)
    Z = Z * T
    phiA = np.asarray(phi_lib.logit_confidence(jnp.asarray(Z), aud.data.y_audit))
    phiA = attr["phi"]
    inm = in_mask[..., None]
    mean_in = (Z * inm).sum(0) / inm.sum(0)
    mean_out = (Z * ~inm).sum(0) / (~inm).sum(0)
    delta = mean_out - mean_in     # [n_f, C]
    # diagnostics: OUT phi mean vs retrain phi mean
    phi_out = np.where(~in_mask, phiA, np.nan)
    est = np.nanmean(phi_out, 0)
    r_mean, r_std = retrain["phi"].mean(0), retrain["phi"].std(0)
    print("OUT-phi vs retrain: corr %.3f  mean err/std %.3f  std ratio %.3f" % (
        np.corrcoef(est, r_mean)[0, 1], np.mean((est - r_mean) / r_std),
        np.median(np.nanstd(phi_out, 0) / r_std)))
    orig = req.original
    apply = train_lib.eval_apply_fn(req.model, orig.batch_stats)
    z0 = np.asarray(apply(orig.params, aud.data.x_audit))
    t_phi = np.asarray(phi_lib.logit_confidence(jnp.asarray(z0 + delta), aud.data.y_audit))
    print("corrected-orig phi vs retrain: corr %.3f mean err/std %.3f" % (
        np.corrcoef(t_phi, r_mean)[0, 1], np.mean((t_phi - r_mean) / r_std)))

    # oracle matching (upper bound): logits of K_r retrained models on D_f, independent of scoring
    rpop = pops.Population(name="retrainz", size=32, member=pops.train_member(req.model, train_lib.optimizer_for_rows(cfg.train, aud.remain_rows.size, cfg.train.epochs), req.data.input_shape, epochs=int(cfg.train.epochs), batch_size=int(cfg.train.batch_size), fields=FIELDS),
                           shared=(jnp.asarray(aud.remain_rows, jnp.int32), aud.x_all, aud.y_all, aud.data), spec={"proto": "retrainz", "fp": req.fingerprint},
                           fields=tuple(sorted(FIELDS.items())), driver="vmap")
    ZR = logits_of(pops.run_population(rpop, jax.random.key(99), req.cache, n_audit=aud.n_audit, chunk_size=32, progress=False))
    out_idx = [np.flatnonzero(~in_mask[:, j]) for j in range(forget_rows.size)]
    n_out_max = max(len(o) for o in out_idx)
    out_tab = np.stack([np.resize(o, n_out_max) for o in out_idx], 1)   # [n_out_max, n_f]
    out_count = np.array([len(o) for o in out_idx])
    resid = Z - mean_out[None]    # [K, n_f, C]
    # MODE 3's teacher: each D_f example's logits fitted over the K models on its own membership
    # and the share of the other D_f rows kept (quadratic), read at none of D_f (count 0); the
    # per-run draw adds a model's residual of that fit. Needs --forget-rate uniform.
    zero = np.zeros_like(mean_out)
    zero_resid = np.zeros_like(Z)
    total = in_mask.sum(1)
    for j in range(forget_rows.size):
      own = in_mask[:, j].astype(float)
      share = (total - own) / max(forget_rows.size - 1, 1)
      xj = np.stack([np.ones(args.K), own, share, share ** 2], 1)
      coef, *_ = np.linalg.lstsq(xj, Z[:, j, :], rcond=None)
      zero[j] = coef[0]
      zero_resid[:, j] = Z[:, j, :] - xj @ coef
    t0_phi = np.asarray(phi_lib.logit_confidence(jnp.asarray(zero), aud.data.y_audit))
    print("count-0 phi vs retrain: corr %.3f mean err/std %.3f" % (
        np.corrcoef(t0_phi, r_mean)[0, 1], np.mean((t0_phi - r_mean) / r_std)))

    def make_member(steps, lr, bf, br, wf, noise, mode=0.0, rloss=0, model=req.model):
      x_f = aud.data.x_audit
      def member(key, params, batch_stats, x_all, y_all, data, r_rows, delta_j, resid_j, out_tab_j, out_count_j, mean_out_j, zr_j, zero_j, zero_resid_j):
        ap = train_lib.eval_apply_fn(model, batch_stats)
        z0f = ap(params, x_f)
        kn, kr = jax.random.split(key)
        # per-example draw of an OUT model's residual: retraining-like spread per run
        pick = jax.random.randint(kn, (x_f.shape[0],), 0, out_count_j)
        kidx = out_tab_j[pick, jnp.arange(x_f.shape[0])]
        eps = resid_j[kidx, jnp.arange(x_f.shape[0])]
        kk = jax.random.randint(jax.random.fold_in(kn, 7), (), 0, zr_j.shape[0])
        pick_all = jax.random.randint(jax.random.fold_in(kn, 11), (x_f.shape[0],), 0, zero_resid_j.shape[0])
        eps0 = zero_resid_j[pick_all, jnp.arange(x_f.shape[0])]
        if mode == 3:
          target = zero_j + noise * eps0
        else:
          target = jnp.where(mode == 2, zr_j[kk], mode * (mean_out_j + noise * eps) + (1 - mode) * (z0f + delta_j + noise * eps))
        x_r, y_r = x_all[r_rows], y_all[r_rows]
        tx = optax.adam(lr)
        st = tx.init(params)
        def step(carry, i):
          prm, st = carry
          k = jax.random.fold_in(kr, i)
          k1, k2 = jax.random.split(k)
          fi = jax.random.randint(k1, (bf,), 0, x_f.shape[0])
          ri = jax.random.randint(k2, (br,), 0, x_r.shape[0])
          xr = x_r[ri]
          zr0 = ap(params, xr)
          def loss(pp):
            lf = jnp.mean(jnp.sum((ap(pp, x_f[fi]) - target[fi]) ** 2, -1))
            if rloss == 1:     # cross-entropy on D_r's labels: learn D_r, as retraining does
              lr_ = optax.softmax_cross_entropy_with_integer_labels(ap(pp, xr), y_r[ri]).mean()
            else:              # the starting model's own logits on D_r
              lr_ = jnp.mean(jnp.sum((ap(pp, xr) - zr0) ** 2, -1))
            return wf * lf + lr_
          g = jax.grad(loss)(prm)
          up, st = tx.update(g, st, prm)
          return (optax.apply_updates(prm, up), st), None
        (prm, _), _ = jax.lax.scan(step, (params, st), jnp.arange(steps))
        return pops.member_record(ap, prm, data)
      return member

    results = []
    for v in (args.variants.split(";") if args.variants else ["200,1e-3,16,64,1.0,1.0"]):
      parts = v.split(",")
      steps, lr, bf, br, wf, noise = parts[:6]
      mode = float(parts[6]) if len(parts) > 6 else 0.0
      rloss = int(parts[7]) if len(parts) > 7 else 0
      steps, bf, br = int(steps), int(bf), int(br)
      lr, wf, noise = float(lr), float(wf), float(noise)
      m = make_member(steps, lr, bf, br, wf, noise, mode, rloss)
      rem = jnp.asarray(aud.remain_rows, jnp.int32)
      shared_tail = (aud.x_all, aud.y_all, aud.data, rem, jnp.asarray(delta, jnp.float32),
                     jnp.asarray(resid, jnp.float32), jnp.asarray(out_tab, jnp.int32),
                     jnp.asarray(out_count, jnp.int32), jnp.asarray(mean_out, jnp.float32), jnp.asarray(ZR, jnp.float32),
                     jnp.asarray(zero, jnp.float32), jnp.asarray(zero_resid, jnp.float32))
      row = {"v": v, "cost_frac": steps * (bf + br) / (cfg.train.epochs * aud.remain_rows.size)}
      for proto in ("single", "per_seed"):
        if proto == "single":
          pp = pops.Population(name=f"dmm_{proto}", size=args.N, member=m, mapped=(),
                               shared=(orig.params, orig.batch_stats) + shared_tail,
                               spec={"v": v, "proto": proto, "t": time.time()}, driver="vmap")
        else:
          pp = pops.Population(name=f"dmm_{proto}", size=args.N, member=m,
                               mapped=(none["params"], none["batch_stats"]), shared=shared_tail,
                               spec={"v": v, "proto": proto, "t": time.time()}, driver="vmap")
        t0 = time.time()
        rec = pops.run_population(pp, jax.random.key(5), stages.StageCache(ROOT / "scratch"),
                                  n_audit=aud.n_audit, chunk_size=args.N, progress=False)
        e = eps_lib.population_entry(rec, retrain, f_or)
        row[proto] = {k: e[k] for k in ("relative_f", "phi_median", "spread_ratio", "test_acc")}
        row[proto]["s"] = time.time() - t0
      print(json.dumps(row))
      results.append(row)
    print("retrain phi median", float(np.median(retrain["phi"])), "test acc", float(np.mean(retrain["test_acc"])))


if __name__ == "__main__":
  scripts.run(main)
