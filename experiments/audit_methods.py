"""``compare_methods.py --audit``: every method under the per-example audits, beside time.

    python experiments/compare_methods.py --audit --config configs/quick_audit.py \
        --methods all --seeds 0,1,2 --out out/audit_methods

Per seed, every method is a plan of one request (one work directory): the
audit's populations run through the same vmapped code as ``jaxunlearn audit``
(:class:`jaxunlearn.auditor.Auditor`) and are shared across rows:

* the epsilon-score's ``retrain``, ``oracle`` and ``none`` populations (and
  ``none``'s originals, the per-seed protocol's starting points), once per seed;
* U-LiRA's originals and retrain control, once per seed;
* per method: N unlearning runs from the work dir's original (single
  protocol), N from ``none``'s originals (per seed), and U-LiRA's M x K runs.

Per-request seconds come from a ``run`` of the same settings on the same
request (``time_s.unlearn``, and ``time_s.reference`` for methods with a
reference model), not from a population's time divided by N. A method that
cannot run on the model (``ct`` on a model without conv layers) is a row that
says so.

Writes ``compare_methods_audit.{json,csv,md,png}``: the table (mean ± std
over seeds) and a Pareto plot of relative F (per seed) against per-request
seconds.
"""

from __future__ import annotations

import math
from pathlib import Path

from experiments import common, method_requests
from jaxunlearn.audits import NONE, ORACLE, RETRAIN

NAME = "compare_methods_audit"
COLUMNS = ("relative F (single)", "relative F (per seed)", "U-LiRA AUC", "U-LiRA AUC null q99",
           "U-LiRA bal. acc", "U-LiRA bal. acc null q99", "KLOM P95 D_f (single)",
           "KLOM P95 D_f floor", "test acc - retrain's",
           "examples/request (x retrain)", "reference once (x retrain)",
           "s/request", "s/request (reference reused)", "speedup")


def not_applicable(prep, spec) -> str | None:
  """Why the method of ``spec`` cannot run on the request's model (None: it can).

  The plan is made as a request makes it (a bad setting is an error, not a
  row), then traced once on abstract arrays of the model and the real split
  sizes: what fails there cannot run on this model (``ct`` without conv layers).
  """
  from jaxunlearn import plan as plan_lib, stages
  from jaxunlearn.errors import ConfigError
  plan = plan_lib.make_plan(spec.label, spec.block, where=spec.where, train=prep.cfg.train,
                            fields=spec.fields)
  abstract = stages.abstract_variables(prep.model, prep.cfg.train, prep.data.input_shape)
  s = prep.splits
  heldout = plan_lib.heldout_rows(s.holdout_idx, prep.y_train, s.forget_idx)
  try:
    plan_lib.abstract_check(plan, abstract["params"], abstract["batch_stats"], model=prep.model,
                            input_shape=prep.data.input_shape, n_forget=s.n_forget,
                            n_remain=int(s.remain_idx.size), num_classes=prep.data.num_classes,
                            n_heldout=int(heldout.size))
  except ConfigError as e:
    return str(e)
  return None


def check_statistics(cfg) -> None:
  """The table needs a statistic that trains the retrain population (``epsilon`` or ``klom``);
  refused before any work otherwise."""
  from jaxunlearn.errors import ConfigError
  have = tuple(cfg.audit.statistics)
  if not set(have) & {"epsilon", "klom"}:
    raise ConfigError(f"--audit: audit.statistics={have!r} has no statistic that trains the "
                      "retrain population the table compares against; include 'epsilon' (e.g. "
                      "--set \"audit.statistics=('epsilon', 'ulira')\") or drop the --set")


def run_seed(args, settings, seed: int, labels: list[str], out: Path) -> dict:
  """The audit and the timed runs of every applicable method of one seed."""
  from jaxunlearn import auditor, pipeline, request
  from jaxunlearn.errors import NonFiniteError
  cfg, specs = method_requests.seed_request(args, settings, seed, labels)
  workdir = out / "work" / f"seed{seed}"
  prep = request.prepare(cfg, workdir, methods=[])
  skipped = {s.label: why for s in specs if (why := not_applicable(prep, s)) is not None}
  specs = [s for s in specs if s.label not in skipped]
  with request.open_request(cfg, workdir, methods=specs, checks=(auditor.check,)) as req:
    audit = auditor.Auditor(req)
    sections = audit.audit()
    runs = {}
    for s in specs:
      try:
        runs[s.label] = pipeline.run_plan(req, s.label)[0]
      except NonFiniteError as e:
        runs[s.label] = {"diverged": str(e)}
    retrain = audit.population(RETRAIN)
    return {"seed": seed, "sections": sections, "runs": runs, "not_applicable": skipped,
            "retrain_test_acc": float(retrain["test_acc"].mean()),
            "populations": audit.times}


def row(seed_result: dict, label: str) -> dict:
  """One method's figures on one seed (None where they do not exist)."""
  eps, uli = seed_result["sections"].get("epsilon", {}), seed_result["sections"].get("ulira", {})
  out = dict.fromkeys(COLUMNS)
  if label in seed_result["not_applicable"]:
    return out
  for protocol, column in (("single", "relative F (single)"),
                           ("per_seed", "relative F (per seed)")):
    if protocol in eps and label in eps[protocol]:
      out[column] = eps[protocol][label].get("relative_f")
  name = {NONE: "identity_control", ORACLE: "retrain_control"}.get(label, label)
  if name in uli:
    u = uli[name]
    out.update({"U-LiRA AUC": u["auc"], "U-LiRA AUC null q99": u.get("null_auc_q99"),
                "U-LiRA bal. acc": u["balanced_acc"],
                "U-LiRA bal. acc null q99": u.get("null_balanced_acc_q99")})
  klom = seed_result["sections"].get("klom", {}).get("single", {})
  if label in klom:     # with klom in audit.statistics; the floor is the oracle row's P95
    out["KLOM P95 D_f (single)"] = klom[label]["forget"]["p95"]
    out["KLOM P95 D_f floor"] = klom["oracle"]["forget"]["p95"]
  if "single" in eps and label in eps["single"]:
    out["test acc - retrain's"] = eps["single"][label]["test_acc"] - seed_result[
        "retrain_test_acc"]
  r = seed_result["runs"].get(label)
  if r and r.get("unlearn_cost"):
    c = r["unlearn_cost"]
    out["examples/request (x retrain)"] = c["fraction_of_retrain"]
    out["reference once (x retrain)"] = (c["reference_one_off_examples"]
                                         / c["retrain_cost_examples"])
  elif label == ORACLE:
    out["examples/request (x retrain)"], out["reference once (x retrain)"] = 1.0, 0.0
  if r and "time_s" in r:
    t = r["time_s"]
    out["s/request"] = t["unlearn"] + t.get("reference", 0.0)
    out["s/request (reference reused)"] = t["unlearn"]
    out["speedup"] = r.get("speedup")
  elif label == ORACLE and any("time_s" in v for v in seed_result["runs"].values()):
    any_run = next(v for v in seed_result["runs"].values() if "time_s" in v)
    out["s/request"] = out["s/request (reference reused)"] = any_run["time_s"]["retrain"]
    out["speedup"] = 1.0
  return out


def main_audit(args, settings, labels: list[str]) -> dict:
  """The ``--audit`` table: every method, both protocols, U-LiRA, time."""
  out = Path(args.out)
  cfg0 = common.load_config(args.config, args.set)
  check_statistics(cfg0)
  results = []
  for seed in common.seeds(args.seeds):
    res = run_seed(args, settings, seed, labels, out)
    results.append(res)
    print(f"seed {seed}: " + "; ".join(
        f"{k}: {v:.0f} s" for k, v in ((n, t["time_s"]) for n, t in res["populations"].items())),
          flush=True)
  rows_of = [ORACLE, NONE, *labels]
  stats, table = {}, []
  for label in rows_of:
    figs = [row(r, label) for r in results]
    stats[label] = {c: common.mean_std([f[c] for f in figs]) for c in COLUMNS}
    na = [r["not_applicable"].get(label) for r in results if label in r["not_applicable"]]
    diverged = sum(1 for r in results if "diverged" in r["runs"].get(label, {}))
    cells = [common.fmt(*stats[label][c]) for c in COLUMNS]
    if na:
      cells = ["not applicable"] + [""] * (len(COLUMNS) - 1)
      stats[label]["not_applicable"] = na[0]
    table.append([{ORACLE: "oracle (retrain vs retrain)", NONE: "none (no unlearning)"}.get(
        label, label), *cells, f"{diverged}/{len(results)}"])
  header = ["method", *COLUMNS, "diverged"]
  note = (f"Seeds {','.join(map(str, common.seeds(args.seeds)))}; mean ± std over seeds. `{args.config}`"
          + (f" with {' '.join(args.set)}" if args.set else "")
          + f"; N = {cfg0.audit.num_models} models per epsilon population; U-LiRA: "
          f"{cfg0.audit.ulira.num_originals} originals x {cfg0.audit.ulira.forget_sets_per_original}"
          " forget sets. Relative F = F / the oracle's F (retrain vs retrain) at the same N; "
          "single: every run from the work dir's original; per seed: run i from original i. "
          "U-LiRA: per-example likelihood-ratio attack, lower is better; null q99: the 99th "
          "percentile of the same figure with IN/OUT shuffled within each example (a row above "
          "it is evidence of leakage); the oracle row shows the retrain control, none the "
          "identity control. KLOM P95 D_f (with klom in audit.statistics): the 95th "
          "percentile over D_f of KL(population || retrain) of binned phi, single protocol; "
          "floor: the oracle's against retrain at the same N (lower is better). "
          "Test acc - retrain's: mean over the single-protocol population "
          "against the retrain population. Examples/request: examples processed by one "
          "request (forward+backward = 1, forward only = 1/3; the unlearning run's whole "
          "schedule, plus a reference model trained for the request), as a fraction of "
          "retraining's (jaxunlearn/cost.py); reference once: a reference reused over requests "
          "(reference.source=holdout), paid once. s/request: seconds of one `run` of the same "
          "settings (unlearning, plus the reference model's training for methods that use "
          "one; compilation excluded); reference reused: unlearning alone. Speedup: "
          "retraining's seconds / s/request.")
  meta = {**common.provenance(), "settings": args.settings, "stats": stats,
          "not_applicable": {k: v.get("not_applicable") for k, v in stats.items()
                             if v.get("not_applicable")}}
  runs = [{"seed": r["seed"], "sections": r["sections"], "populations": r["populations"],
           "not_applicable": r["not_applicable"],
           "runs": {k: {kk: v.get(kk) for kk in ("time_s", "speedup", "diverged", "models",
                                                 "hparams", "method", "unlearn_cost")}
                    for k, v in r["runs"].items()}} for r in results]
  text = common.write_outputs(out, NAME, header, table, runs, meta, note)
  plot_pareto(out / f"{NAME}.png", stats, labels, cfg0.setting)
  print(text)
  return {"results": results, "stats": stats, "markdown": text}


def _label_offsets() -> list[tuple[float, float]]:
  """Candidate label offsets in points: rings of growing radius, 16 directions each."""
  out = []
  for radius in (8, 16, 26, 38, 52, 68, 86):
    for k in range(16):
      angle = 2 * math.pi * (k / 16 + 1 / 32)   # off the axes, so no label sits on an error bar
      out.append((radius * math.cos(angle), radius * math.sin(angle)))
  return out


def _place_labels(ax, points: list[tuple[float, float, str, str]]) -> None:
  """Annotates points with labels that overlap neither each other nor a point.

  Greedy in display coordinates: each label takes the nearest free offset in
  rings around its point, inside the axes, with a thin leader line, in the
  point's colour. A label with no free place in any ring is numbered at its
  point and listed under the plot instead.
  """
  from matplotlib.text import Text
  from matplotlib.transforms import Bbox
  fig = ax.figure
  fig.canvas.draw()
  renderer = fig.canvas.get_renderer()
  frame = ax.get_window_extent(renderer)
  marks = []
  for x, y, *_ in points:
    px, py = ax.transData.transform((x, y))
    marks.append(Bbox.from_extents(px - 4, py - 4, px + 4, py + 4))
  placed, unplaced = [], []
  for x, y, text, color in sorted(points, key=lambda p: (-p[1], p[0])):
    for dx, dy in _label_offsets():
      ann = ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy), fontsize=7,
                        color=color,
                        ha="left" if dx >= 0 else "right", va="center",
                        arrowprops={"arrowstyle": "-", "lw": 0.5, "color": color,
                                    "shrinkA": 0, "shrinkB": 2})
      ann.update_positions(renderer)
      box = Text.get_window_extent(ann, renderer).expanded(1.04, 1.15)   # the text, not its line
      inside = (box.x0 >= frame.x0 and box.x1 <= frame.x1 and box.y0 >= frame.y0
                and box.y1 <= frame.y1)
      if inside and not any(box.overlaps(b) for b in placed + marks):
        placed.append(box)
        break
      ann.remove()
    else:
      unplaced.append((x, y, text))
  for k, (x, y, text) in enumerate(unplaced, 1):
    ax.annotate(str(k), (x, y), textcoords="offset points", xytext=(0, 5), fontsize=6,
                ha="center")
  if unplaced:
    ax.text(0.0, -0.16, "  ".join(f"{k}: {t}" for k, (_, _, t) in enumerate(unplaced, 1)),
            transform=ax.transAxes, fontsize=7, va="top")


def plot_pareto(path: Path, stats: dict, labels: list[str], setting: str) -> None:
  """Relative F (per seed) against per-request seconds, log x, one point per method."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(8.5, 5.2))
  points = []
  for label in labels:
    (x, xs), (y, ys) = stats[label]["s/request"], stats[label]["relative F (per seed)"]
    if x is None or y is None or not (math.isfinite(x) and x > 0):
      continue
    bar = ax.errorbar([x], [y], xerr=[xs or 0.0], yerr=[ys or 0.0], fmt="o", ms=4, capsize=2)
    points.append((x, y, label, bar[0].get_color()))
  retrain = stats.get(ORACLE, {}).get("s/request", (None, None))[0]
  if retrain:
    ax.axvline(retrain, color="k", ls="--", lw=0.8)
    points.append((retrain, 1.0, "retrain", "k"))
    ax.plot([retrain], [1.0], "k*", ms=9)
  ax.set_xscale("log")
  ax.set_xlabel("seconds per request (log scale; reference training included)")
  ax.set_ylabel("relative F, per-seed protocol (1 = retraining)")
  ax.set_title(f"{setting}: forgetting quality against cost (mean ± std over seeds)")
  ax.grid(alpha=0.3)
  fig.tight_layout()          # fix the axes first: labels are placed in display coordinates
  _place_labels(ax, points)
  fig.savefig(path, dpi=120, bbox_inches="tight")
  plt.close(fig)
