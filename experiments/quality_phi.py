"""Per-example phi on D_f: the original, the reference, the methods and retraining, side by side.

    python experiments/quality_phi.py --config configs/quick_audit.py --seeds 0 \
        --methods lightweight_quick,isr --out out/quality_phi
    python experiments/quality_phi.py --config configs/quick_audit_backdoor.py --seeds 0 \
        --methods lightweight_quick,isr --out out/quality_phi_backdoor

For one seed's request (the config's ``audit.methods`` labels, single
protocol), the populations the epsilon-score reads, through the auditor (so a
work dir a ``jaxunlearn audit`` already filled is reused): ``retrain`` (N
models on D_r), ``none`` (N originals, each its own seed) and each method's
N unlearning runs from the work dir's original, plus ``reference``: N
reference models as the paper trains them (``reference.size`` examples drawn
from D_r afresh for each, ``reference.epochs`` epochs of the ``train``
recipe).

Writes ``quality_phi.png`` (left: each population's median phi per D_f
example, examples sorted by the retrained models' median, with the 10-90%
band of retraining; right: the per-example bias in retraining's standard
deviations, ``z = (mean - retrain mean) / retrain std``) and
``quality_phi.{md,json}``: per population, the median phi, the median |z|,
the spread ratio (per-example std over retraining's) and relative F where
the audit computes it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from experiments import common  # noqa: E402

NAME = "quality_phi"


def bias_z(phi: np.ndarray, retrain: np.ndarray) -> np.ndarray:
  """Per-example ``(mean phi - retraining's mean) / retraining's std`` (``[n]``)."""
  sd = np.maximum(retrain.std(0), 1e-6)
  return (phi.mean(0) - retrain.mean(0)) / sd


def summary(phi: np.ndarray, retrain: np.ndarray) -> dict:
  return {"phi_median": float(np.median(phi)),
          "abs_z_median": float(np.median(np.abs(bias_z(phi, retrain)))),
          "spread_ratio": float(np.median(phi.std(0) / np.maximum(retrain.std(0), 1e-6)))}


def collect(cfg, workdir: Path, labels: list[str]) -> dict:
  """``{population: phi [N, n]}`` and each method's relative F (single protocol)."""
  import jax
  from jaxunlearn import auditor, request
  from jaxunlearn.audits import NONE, ORACLE, RETRAIN, epsilon
  specs = [s for s in auditor.method_specs(cfg) if s.label in labels]
  missing = sorted(set(labels) - {s.label for s in specs})
  if missing:
    from jaxunlearn.errors import ConfigError
    raise ConfigError(f"--methods {missing} are not labels of the config's audit.methods "
                      f"({[s.label for s in auditor.method_specs(cfg)]})")
  with request.open_request(cfg, workdir, methods=specs, checks=(auditor.check,)) as req:
    audit = auditor.Auditor(req)
    retrain = audit.train_population(RETRAIN, audit.remain_rows)
    none = audit.train_population(NONE, audit.train_rows)
    oracle = epsilon.population_entry(audit.train_population(ORACLE, audit.remain_rows),
                                      retrain)
    n_ref, n = int(req.splits.reference_idx.size), int(cfg.audit.num_models)
    keys = jax.random.split(jax.random.key(int(cfg.seed) + 7919), n)
    ds = np.stack([np.asarray(jax.random.choice(k, audit.remain_rows, (n_ref,), replace=False))
                   for k in keys])
    reference = audit.train_population("reference", ds, epochs=int(cfg.reference.epochs))
    phi = {"retrain": retrain["phi"], "original": none["phi"], "reference": reference["phi"]}
    rel = {}
    for label in labels:
      pop = audit.unlearn_population(label, label)
      phi[label] = pop["phi"]
      rel[label] = epsilon.population_entry(pop, retrain, oracle["forgetting_quality"])[
          "relative_f"]
    rel["original"] = epsilon.population_entry(none, retrain, oracle["forgetting_quality"])[
        "relative_f"]
  return {"phi": {k: np.asarray(v) for k, v in phi.items()}, "relative_f": rel,
          "oracle_f": oracle["forgetting_quality"]}


def plot(path: Path, phi: dict, title: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  retrain = phi["retrain"]
  order = np.argsort(np.median(retrain, 0))
  x = np.arange(retrain.shape[1])
  fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [2, 1]})
  lo, hi = np.percentile(retrain, [10, 90], axis=0)
  ax.fill_between(x, lo[order], hi[order], color="black", alpha=0.15,
                  label="retrain 10-90%")
  colors = {"retrain": "black", "original": "tab:gray", "reference": "tab:orange"}
  palette = iter(["tab:blue", "tab:green", "tab:red", "tab:purple", "tab:brown"])
  names = list(phi)
  for name in names:
    color = colors.get(name) or next(palette)
    colors[name] = color
    ax.plot(x, np.median(phi[name], 0)[order], lw=1.2 if name != "retrain" else 2,
            color=color, label=name)
  ax.set_xlabel("D_f example (sorted by the retrained models' median phi)")
  ax.set_ylabel("phi = log p(y) - log(1 - p(y)), median over N models")
  ax.legend(fontsize=8, loc="best")
  ax.set_title(title, fontsize=10)
  data = [bias_z(phi[name], retrain) for name in names if name != "retrain"]
  try:
    bx.boxplot(data, orientation="horizontal", showfliers=False)
  except TypeError:     # matplotlib < 3.10
    bx.boxplot(data, vert=False, showfliers=False)
  bx.set_yticks(range(1, len(data) + 1), [n for n in names if n != "retrain"], fontsize=8)
  bx.axvline(0, color="black", lw=0.8)
  bx.set_xlabel("per-example bias z, in retraining's std (0: retraining)")
  fig.tight_layout()
  fig.savefig(path, dpi=120, bbox_inches="tight")
  plt.close(fig)


def main(argv=None) -> dict:
  p = common.base_parser(__doc__.splitlines()[0], "configs/quick_audit.py")
  p.add_argument("--methods", default="lightweight_quick,isr",
                 help="comma-separated labels of the config's audit.methods")
  args = p.parse_args(argv)
  out = Path(args.out)
  labels = [m.strip() for m in args.methods.split(",") if m.strip()]
  seed = common.seeds(args.seeds)[0]
  cfg = common.load_config(args.config, [*args.set, f"seed={seed}"])
  got = collect(cfg, out / "work" / f"seed{seed}", labels)
  phi = got["phi"]
  rows = {name: {**summary(v, phi["retrain"]), "relative_f": got["relative_f"].get(name)}
          for name, v in phi.items()}
  out.mkdir(parents=True, exist_ok=True)
  title = f"{cfg.setting}, seed {seed}: phi on D_f ({phi['retrain'].shape[1]} examples)"
  plot(out / f"{NAME}.png", phi, title)
  lines = [f"# {title}", "", f"`{args.config}` {' '.join(args.set)}; N = "
           f"{phi['retrain'].shape[0]} models per population; oracle F {got['oracle_f']:.3f}.",
           "", "| population | phi median | median abs bias z | spread ratio | relative F |",
           "|---|---|---|---|---|"]
  for name, r in rows.items():
    rf = "" if r["relative_f"] is None else f"{r['relative_f']:.3f}"
    lines.append(f"| {name} | {r['phi_median']:.2f} | {r['abs_z_median']:.2f} | "
                 f"{r['spread_ratio']:.2f} | {rf} |")
  text = "\n".join(lines) + "\n"
  (out / f"{NAME}.md").write_text(text)
  (out / f"{NAME}.json").write_text(json.dumps(
      {**common.provenance(), "config": args.config, "set": args.set, "seed": seed,
       "rows": rows, "oracle_f": got["oracle_f"]}, indent=1))
  print(text)
  return rows


if __name__ == "__main__":
  from jaxunlearn import scripts
  scripts.run(main)
