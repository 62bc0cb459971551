"""How cost, time and peak memory grow with the training set: subsets of Fashion-MNIST.

    python benchmarks/data_scale.py --sizes 5000,15000,30000,60000 --out out/data_scale
    python benchmarks/data_scale.py --sizes 2000 --config configs/fmnist_mlp.py \
        --set train.epochs=1 --out out/ds_smoke          # a quick check of the plumbing

For each size n, the first n/10 training images of every class (in the IDX
files' order) and the whole test set are written to an npz file, and one
``jaxunlearn run`` of ``--config`` (default: the paper's Fashion-MNIST setting,
``configs/fmnist_mlp.py``) runs on it in its own process, with |D_f| = 1% and
|D_s| = 10% of n. From each ``results.json`` the table takes, per stage
(retraining, the reference, unlearning): seconds (device work, compilation
apart), examples processed (``unlearn_cost``) and the process's peak host
memory at the end of the stage (``peak_host_memory_mb``: a high-water mark, so
it never falls from one stage to the next), and the speedups with their bound
(retraining's examples over the request's). Writes ``data_scale.{json,md}``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from benchmarks import common  # noqa: E402
from jaxunlearn import scripts  # noqa: E402
from jaxunlearn.errors import ConfigError  # noqa: E402

NAME = "data_scale"
ROOT = Path(__file__).resolve().parents[1]


def subset(x, y, n: int, num_classes: int):
  """The first ``n // num_classes`` rows of each class, in the data's order."""
  per = n // num_classes
  rows = np.sort(np.concatenate([np.flatnonzero(y == c)[:per] for c in range(num_classes)]))
  if rows.size < per * num_classes:
    raise ConfigError(f"--sizes {n}: the data has fewer than {per} images of some class")
  return x[rows], y[rows]


def write_subsets(dataset: str, sizes, out: Path) -> dict:
  """``{n: npz path}`` of each subset (the test set whole)."""
  from jaxunlearn import data as data_lib
  d = data_lib.load(dataset)
  x_train = np.round(np.asarray(d.x_train) * 255).astype(np.uint8)
  x_test = np.round(np.asarray(d.x_test) * 255).astype(np.uint8)
  paths = {}
  for n in sizes:
    if n > d.n_train:
      raise ConfigError(f"--sizes {n}: {dataset} has {d.n_train} training images")
    x, y = subset(x_train, np.asarray(d.y_train), n, d.num_classes)
    path = out / "data" / f"{dataset}_{n}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x_train=x, y_train=y, x_test=x_test, y_test=np.asarray(d.y_test))
    paths[n] = path
  return paths


def run_size(config: str, npz: Path, workdir: Path, sets) -> dict:
  """One ``jaxunlearn run`` on the subset, in its own process; its results.json."""
  cmd = [sys.executable, "-m", "jaxunlearn.cli", "run", "--config", config,
         "--workdir", str(workdir), f"--config.dataset=npz:{npz}", "--config.num_classes=10",
         "--config.forget.size=0", "--config.forget.fraction=0.01",
         "--config.reference.size=0.1", "--config.report.progress=False"]
  cmd += [f"--config.{s}" for s in sets]
  subprocess.run(cmd, cwd=ROOT, check=True,
                 env={**os.environ, "PYTHONPATH": str(ROOT)})
  return json.loads((workdir / "results.json").read_text())


def row(n: int, r: dict) -> dict:
  cost = r["unlearn_cost"]
  ref_examples = cost["reference_per_request_examples"]
  unlearn_examples = cost["cost_examples"]
  retrain = cost["retrain_cost_examples"]
  return {"n_train": n, "n_forget": r["n_forget"], "n_reference": r["n_reference"],
          "seconds": {k: r["time_s"].get(k) for k in ("retrain", "reference", "unlearn")},
          "examples": {"retrain": retrain, "reference": ref_examples, "unlearn": unlearn_examples},
          "peak_host_memory_mb": r.get("peak_host_memory_mb", {}),
          "speedup": r.get("speedup"), "speedup_amortized": r.get("speedup_amortized"),
          "speedup_bound": retrain / (ref_examples + unlearn_examples),
          "speedup_amortized_bound": retrain / unlearn_examples,
          "acc_test": {k: v["acc_test"] for k, v in r["models"].items()}}


def markdown(rows, config: str, sets) -> str:
  lines = [f"# Cost, time and peak memory against the training set ({config})", "",
           f"Machine: {common.machine()}. Date: {common.today()}. Overrides: "
           f"{', '.join(sets) or 'none'}.", "",
           "| n train | stage | seconds | examples | x retrain's examples | peak host MB |",
           "|---|---|---|---|---|---|"]
  for r in rows:
    for stage in ("retrain", "reference", "unlearn"):
      sec = r["seconds"][stage]
      mem = r["peak_host_memory_mb"].get(stage)
      lines.append(f"| {r['n_train']} | {stage} | {sec:.1f} | {r['examples'][stage]:,.0f} | "
                   f"{r['examples'][stage] / r['examples']['retrain']:.3f} | "
                   f"{'' if mem is None else f'{mem:.0f}'} |")
  lines += ["", "| n train | speedup (bound) | reused reference: speedup (bound) | test acc: "
            "original / retrain / unlearned |", "|---|---|---|---|"]
  for r in rows:
    a = r["acc_test"]
    lines.append(f"| {r['n_train']} | {r['speedup']:.2f} ({r['speedup_bound']:.2f}) | "
                 f"{r['speedup_amortized']:.2f} ({r['speedup_amortized_bound']:.2f}) | "
                 f"{a['original']:.4f} / {a['retrain']:.4f} / {a['unlearned']:.4f} |")
  return "\n".join(lines)


def main(argv=None) -> None:
  p = scripts.parser(__doc__.splitlines()[0])
  p.add_argument("--sizes", type=scripts.int_list("--sizes"), default="5000,15000,30000,60000")
  p.add_argument("--dataset", default="fashion_mnist")
  p.add_argument("--config", default="configs/fmnist_mlp.py")
  p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                 help="a config override for every run, e.g. train.epochs=1")
  p.add_argument("--out", type=scripts.out_dir(), required=True)
  args = p.parse_args(argv)
  if any(n < 100 for n in args.sizes):
    p.error("--sizes: each size needs at least 100 images (1% of it is D_f)")
  if not (ROOT / args.config).is_file():
    p.error(f"--config {args.config} is not a file")
  paths = write_subsets(args.dataset, args.sizes, args.out)
  rows = []
  for n in args.sizes:
    r = run_size(args.config, paths[n], args.out / "work" / str(n), args.set)
    rows.append(row(n, r))
    print(json.dumps(rows[-1]), flush=True)
  common.write_outputs(args.out, NAME, {"rows": rows, "machine": common.machine(),
                                        "date": common.today(), "config": args.config,
                                        "overrides": args.set},
                       markdown(rows, args.config, args.set))


if __name__ == "__main__":
  scripts.run(main)
