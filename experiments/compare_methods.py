"""Every unlearning method against retraining: accuracy, forget loss, MIA, time.

    python experiments/compare_methods.py --config configs/quick.py --methods all \
        --seeds 0,1,2 --out out/compare_methods

Each method runs with its settings from ``--settings`` (default
``configs/quick_methods.py``: the authors' optimisers and the tuned learning
rates and knobs) on top of ``--config``; ``--set`` overrides come last. All
methods of a seed are plans of one request (:mod:`jaxunlearn.request`): one
work directory, one validation of every method before any training, and the
original, the retrained model and the shadow models trained once per seed. ``gradient_ascent_lr10x``
(gradient ascent at 10x its learning rate) is a control that must come out
bad; ``--control-factors 10,100`` adds ``gradient_ascent_lr100x`` as well,
``--no-bad-control`` leaves the controls out. Every row of a run goes into the
one table, so a control never runs, or writes, apart from the methods. A
method that cannot run on the model (``ct`` on a model without conv layers)
is a row that says so, as in the ``--audit`` table.

Writes ``compare_methods.{json,csv,md}`` (one row per method plus ``retrain``
and ``original``, mean ± std over seeds) and ``compare_methods.png``: the gap
to the retrained model in forget accuracy and forget loss against unlearning
seconds (log scale), one point per method with error bars over seeds.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments import common, method_requests  # noqa: E402
from jaxunlearn import scripts  # noqa: E402

NAME = "compare_methods"
FIGURES = [("test acc", "models.{}.acc_test"), ("forget acc", "models.{}.acc_forget"),
           ("remain acc", "models.{}.acc_remain"), ("forget loss", "models.{}.loss_forget"),
           ("MIA bal. acc (shadow)", "mia.{}.balanced_acc"),
           ("MIA bal. acc (loss attack)", "loss_attack.{}.balanced_acc"),
           ("unlearn s", None), ("speedup", None)]


def run_row(req, label: str) -> dict:
  """One row of a seed: the pipeline's stages and evaluators for ``label``'s plan."""
  from jaxunlearn import pipeline
  return pipeline.run_plan(req, label)[0]


def row_figures(r: dict, model: str) -> dict:
  """The table's figures of ``model`` (``unlearned``, ``retrain`` or ``original``) in ``r``."""
  out = {label: common.get(r, path.format(model)) for label, path in FIGURES if path}
  t = r["time_s"]
  if model == "unlearned":
    out["unlearn s"] = t["unlearn"] + t.get("reference", 0.0)
    out["speedup"] = r.get("speedup")
  elif model == "retrain":
    out["unlearn s"], out["speedup"] = t["retrain"], 1.0
  else:
    out["unlearn s"], out["speedup"] = None, None
  return out


def main(argv=None) -> dict:
  p = common.base_parser(__doc__.split("\n")[0], "configs/quick.py")
  p.add_argument("--methods", default="all", help="comma-separated method names, or 'all'")
  p.add_argument("--settings", default=str(common.ROOT / "configs" / "quick_methods.py"),
                 help="module with apply(cfg, method): each method's settings")
  p.add_argument("--untuned", action="store_true",
                 help="use the settings' defaults, not their tuned values (TUNED)")
  p.add_argument("--control-factors", default="10", type=scripts.float_list("--control-factors"),
                 help="comma-separated multiples of gradient ascent's learning rate, one "
                      "control row each (gradient_ascent_lr<factor>x)")
  p.add_argument("--no-bad-control", dest="bad_control", action="store_false",
                 help="leave out the control rows")
  p.add_argument("--verbose", dest="quiet", action="store_false",
                 help="progress bars of every stage")
  p.add_argument("--audit", action="store_true",
                 help="the per-example audits instead: relative F in both protocols, U-LiRA "
                      "with its null, time (experiments/audit_methods.py)")
  args = p.parse_args(argv)
  out = Path(args.out)
  settings = method_requests.load_settings(args.settings)
  from jaxunlearn import methods
  names = methods.names() if args.methods.strip() == "all" else \
      [m.strip() for m in args.methods.split(",") if m.strip()]
  if not names:
    from jaxunlearn.errors import ConfigError
    raise ConfigError("--methods is empty; name methods (jaxunlearn methods lists them) or "
                      "say all")
  unknown = [m for m in names if m not in methods.names()]
  if unknown:                               # an unknown name fails before any training
    from jaxunlearn.errors import ConfigError
    raise ConfigError(f"--methods: unknown method {unknown[0]!r}; `jaxunlearn methods` lists "
                      f"them ({', '.join(methods.names())})")
  selection = getattr(settings, "SELECTION_SEED", None)
  if selection is not None and selection in common.seeds(args.seeds):
    from jaxunlearn.errors import ConfigError
    raise ConfigError(f"seed {selection} is the tuning's selection seed ({args.settings}); "
                      "report other seeds")
  if args.audit:
    from experiments import audit_methods
    return audit_methods.main_audit(args, settings, names)
  factors = list(args.control_factors) if args.bad_control else []
  controls = [method_requests.control_label(f) for f in factors]
  labels = names + controls
  from experiments import audit_methods
  from jaxunlearn import request, stages
  from jaxunlearn.errors import ConfigError, NonFiniteError
  runs, per_row = [], {label: [] for label in ["retrain", "original", *labels]}
  diverged = {label: 0 for label in per_row}
  not_applicable = {}
  for seed in common.seeds(args.seeds):
    cfg, specs = method_requests.seed_request(args, settings, seed, labels)
    workdir = out / "work" / f"seed{seed}"
    # A method that cannot run on this model (ct without conv layers) is a row saying so, as
    # in the --audit table, not a refusal of every other method.
    prep = request.prepare(cfg, workdir, methods=[])
    skipped = {s.label: why for s in specs
               if (why := audit_methods.not_applicable(prep, s)) is not None}
    if len(skipped) == len(specs):
      label, why = next(iter(skipped.items()))
      raise ConfigError(f"no method of --methods can run on this model ({label}: {why}); "
                        "name methods that can (jaxunlearn methods lists them)")
    for label, why in skipped.items():
      not_applicable.setdefault(label, why)
      runs.append({"seed": seed, "label": label, "not_applicable": why})
    have_references = False
    # The stages every row loads are checked before anything changes.
    with request.open_request(cfg, workdir,
                              methods=[s for s in specs if s.label not in skipped],
                              restores=stages.run_stage_names) as req:
      for label in labels:
        if label in skipped:
          continue
        try:
          r = run_row(req, label)
        except NonFiniteError as e:
          # No model to evaluate: the row counts the seed as diverged, its figures the others.
          runs.append({"seed": seed, "label": label, "diverged": str(e)})
          diverged[label] += 1
          print(f"seed {seed} {label}: diverged ({e})", flush=True)
          continue
        runs.append({"seed": seed, "label": label, "results": r})
        per_row[label].append(row_figures(r, "unlearned"))
        if not have_references:
          per_row["retrain"].append(row_figures(r, "retrain"))
          per_row["original"].append(row_figures(r, "original"))
          have_references = True
        print(f"seed {seed} {label}: test {r['models']['unlearned']['acc_test']:.4f} "
              f"forget {r['models']['unlearned']['acc_forget']:.4f} "
              f"unlearn {r['time_s']['unlearn']:.2f}s", flush=True)
  n_seeds = len(common.seeds(args.seeds))
  header = ["method", *(label for label, _ in FIGURES), "diverged"]
  rows, stats = [], {}
  for label, figs in per_row.items():
    stats[label] = {k: common.mean_std([f[k] for f in figs]) for k, _ in FIGURES}
    stats[label]["diverged"] = diverged[label]
    cells = [common.fmt(*stats[label][k]) for k, _ in FIGURES]
    if label in not_applicable:
      cells = ["not applicable"] + [""] * (len(FIGURES) - 1)
      stats[label]["not_applicable"] = not_applicable[label]
    rows.append([label, *cells, f"{diverged[label]}/{n_seeds}"])
  note = (f"Seeds {','.join(map(str, common.seeds(args.seeds)))}; mean ± std over seeds. Accuracies and forget loss of the "
          "final model; MIA: balanced accuracy of the shadow-model attack and of the loss "
          "attack on D_f against unseen test examples (0.5 = chance). Unlearn s: wall seconds "
          "of device work, compilation excluded (the paper's method includes its reference "
          "model's training); retrain's is its training time. Speedup: retrain s / unlearn s. "
          "Diverged: seeds whose unlearning loss became non-finite (no model; the row's "
          "figures are over the other seeds). Not applicable: the method cannot run on this "
          "model (ct on a model without conv layers)."
          + (f" {', '.join(controls)}: gradient ascent at "
             f"{', '.join(f'{f:g}x' for f in factors)} its learning rate, controls that must "
             "come out bad." if controls else ""))
  meta = {**common.provenance(), "settings": args.settings, "stats": stats}
  text = common.write_outputs(out, NAME, header, rows, runs, meta, note)
  plot_gaps(out / f"{NAME}.png", runs, labels)
  print(text)
  return {"runs": runs, "stats": stats, "markdown": text}


def gap_stats(runs: list[dict], label: str) -> dict:
  """Mean and std over seeds of |unlearned - retrain| in forget acc / loss, and of unlearn s."""
  mine = [r["results"] for r in runs if r["label"] == label and "results" in r]
  acc = [abs(common.get(r, "models.unlearned.acc_forget") - common.get(r, "models.retrain.acc_forget"))
         for r in mine]
  loss = [abs(common.get(r, "models.unlearned.loss_forget")
              - common.get(r, "models.retrain.loss_forget")) for r in mine]
  secs = [row_figures(r, "unlearned")["unlearn s"] for r in mine]
  return {"acc": common.mean_std(acc), "loss": common.mean_std(loss), "s": common.mean_std(secs)}


def plot_gaps(path: Path, runs: list[dict], labels: list[str]) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
  retrain_s = common.mean_std([r["results"]["time_s"]["retrain"] for r in runs
                               if "results" in r])[0]
  for ax, key, ylabel in ((axes[0], "acc", "|forget acc - retrain's|"),
                          (axes[1], "loss", "|forget loss - retrain's|")):
    for label in labels:
      g = gap_stats(runs, label)
      if g["s"][0] is None:          # every seed diverged: nothing to plot
        continue
      (x, xs), (y, ys) = g["s"], g[key]
      ax.errorbar([x], [y], xerr=[xs], yerr=[ys], marker="o", capsize=3, label=label)
      ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    if retrain_s:
      ax.axvline(retrain_s, color="k", ls="--", lw=1, label="retrain time")
    ax.set_xscale("log")
    ax.set_xlabel("unlearning seconds (log scale)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
  axes[1].legend(fontsize=7, loc="best")
  fig.suptitle("Gap to the retrained model against unlearning time (mean ± std over seeds)")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


if __name__ == "__main__":
  scripts.run(main)
