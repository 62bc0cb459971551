"""``audit.md`` and the audit's plots (:mod:`jaxunlearn.auditor`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

EPS_FIGURE = "audit_eps.png"
PHI_FIGURE = "audit_phi.png"


def _fmt(v) -> str:
  if v is None:
    return "-"
  if isinstance(v, float):
    return f"{v:.3f}"
  return str(v)


def markdown(r: dict) -> str:
  """The audit as a markdown page: the epsilon table, the U-LiRA table, the plots."""
  lines = [f"# Audit: {r['setting']} ({r['dataset']}, {r['model']})", "",
           f"D_f: {r['n_forget']} examples"
           + (f" (transforms: {', '.join(r['transforms'])})" if r["transforms"] else "")
           + f"; N = {r['num_models']} models per epsilon population; "
           f"{r['time_s']:.0f} s in all.", "",
           "## Epsilon-score (NeurIPS 2023 unlearning challenge)", "",
           "Each population's phi on D_f against N models retrained on D_r. `oracle` is a "
           "second, independent retrain population (the best score at this N); `none` is N "
           "originals (no unlearning). Higher F is better. Spread ratio: the median over "
           "examples of the std of phi across the population divided by the std across "
           "retrains (1 is the retrains' own spread).", "",
           "| population | F (forgetting quality) | final score | eps median | eps mean | "
           "phi median | spread ratio | remain acc | test acc |",
           "|---|---|---|---|---|---|---|---|---|"]
  for name, e in r["epsilon"].items():
    lines.append(f"| {name} | {_fmt(e['forgetting_quality'])} | {_fmt(e['final_score'])} | "
                 f"{_fmt(e['eps_median'])} | {_fmt(e['eps_mean'])} | {_fmt(e['phi_median'])} | "
                 f"{_fmt(e.get('spread_ratio'))} | {_fmt(e['remain_acc'])} | "
                 f"{_fmt(e['test_acc'])} |")
  if r.get("ulira"):
    u = r["ulira"]
    lines += ["", "## U-LiRA (per-example likelihood-ratio attack)", "",
              f"Pool: {r.get('ulira_pool')}. `retrain_control` should give about 0.5; "
              "`identity_control` (no unlearning) shows how much there is to forget. Lower is "
              "better.", "",
              "| population | balanced acc | AUC | TPR @ 1% FPR | TPR @ 0.1% FPR | "
              "per-example acc median / q90 | separation median / q90 |",
              "|---|---|---|---|---|---|---|"]
    for name, e in u.items():
      lines.append(
          f"| {name} | {_fmt(e['balanced_acc'])} | {_fmt(e['auc'])} | "
          f"{_fmt(e['tpr_at_1pct_fpr'])} | {_fmt(e['tpr_at_01pct_fpr'])} | "
          f"{_fmt(e['per_example_accuracy_median'])} / {_fmt(e['per_example_accuracy_q90'])} | "
          f"{_fmt(e['per_example_separation_median'])} / "
          f"{_fmt(e['per_example_separation_q90'])} |")
  lines += ["", "## Populations", "", "| population | wall s | chunks reused |", "|---|---|---|"]
  for name, t in r["populations"].items():
    lines.append(f"| {name} | {t['time_s']:.1f} | {t['chunks_reused']} |")
  for fig in (r.get("figures") or {}).values():
    lines += ["", f"![{fig}]({fig})"]
  return "\n".join(lines) + "\n"


def plot(out_dir, r: dict, pops: dict, cfg) -> dict:
  """Writes the epsilon histograms and the phi histograms; returns their file names."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  out_dir = Path(out_dir)
  names = list(r["epsilon"])
  fig, axes = plt.subplots(1, len(names), figsize=(3.0 * len(names), 2.6), sharey=True,
                           squeeze=False)
  # Epsilon at or above max_epsilon scores no points: it is shown as one last bin.
  cap = float(r["epsilon"][names[0]]["max_epsilon"])
  bins = np.arange(0.0, cap + 1.0 + 1e-9, 0.5)
  for ax, name in zip(axes[0], names):
    e = r["epsilon"][name]
    ax.hist(np.minimum(e["eps"], cap + 0.75), bins=bins, color="tab:blue", edgecolor="white")
    ax.axvline(cap, color="tab:red", lw=0.8)
    ax.set_title(f"{name}\nF={e['forgetting_quality']:.3f}", fontsize=9)
    ax.set_xlabel(f"per-example epsilon (last bin: >= {cap:g}, no points)", fontsize=7)
  axes[0][0].set_ylabel("examples of D_f")
  fig.suptitle(f"{r['setting']}: per-example epsilon, N={r['num_models']}", fontsize=10)
  fig.tight_layout()
  fig.savefig(out_dir / EPS_FIGURE, dpi=90)
  plt.close(fig)

  retrain = pops["retrain"]["phi"]
  shown = [n for n in names if n != "oracle"]
  k = min(int(cfg.audit.plot_examples), retrain.shape[1])
  # The examples the retrained models are surest they do not fit, then evenly spread ones.
  order = np.argsort(np.median(retrain, 0))
  picks = order[np.linspace(0, order.size - 1, k).astype(int)]
  fig, axes = plt.subplots(k, len(shown), figsize=(2.8 * len(shown), 2.0 * k), squeeze=False)
  for i, ex in enumerate(picks):
    for j, name in enumerate(shown):
      ax = axes[i][j]
      other = pops[name]["phi"][:, ex]
      lo = min(retrain[:, ex].min(), other.min())
      hi = max(retrain[:, ex].max(), other.max())
      b = np.linspace(lo, hi + 1e-6, 16)
      ax.hist(retrain[:, ex], bins=b, alpha=0.6, color="tab:gray", label="retrain")
      ax.hist(other, bins=b, alpha=0.6, color="tab:red", label=name)
      if i == 0:
        ax.set_title(name, fontsize=9)
      if j == 0:
        ax.set_ylabel(f"D_f #{int(ex)}", fontsize=8)
      if i == k - 1:
        ax.set_xlabel("phi")
      ax.tick_params(labelsize=7)
  axes[0][0].legend(fontsize=7)
  fig.suptitle(f"{r['setting']}: phi of single forget examples, gray = retrained models",
               fontsize=10)
  fig.tight_layout()
  fig.savefig(out_dir / PHI_FIGURE, dpi=90)
  plt.close(fig)
  return {"epsilon_histograms": EPS_FIGURE, "phi_histograms": PHI_FIGURE}
