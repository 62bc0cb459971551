"""The ``distributions`` evaluator: how close each model's posteriors are to the retrained model's.

For each model, the mean over examples of ``KL(P_retrain || P_model)`` and
``JS(P_retrain, P_model)`` (nats) on D_f and on the test set
(:mod:`jaxunlearn.divergences`), and a PNG of the histograms of phi (the
logit-scaled confidence of D_f's labels as trained on) on D_f, in place of
the paper's max-softmax histograms (Fig. 13 and 16), which are one spike at
1.0 for every model here.
"""

from __future__ import annotations

import numpy as np

from jaxunlearn import divergences, metrics, workdir as workdir_lib
from jaxunlearn.audits import phi as phi_lib
from jaxunlearn.evaluators import base

FIGURE_NAME = "distributions.png"


@base.register("distributions")
class Distributions(base.Evaluator):
  title = "Output distributions"

  def evaluate(self, inp: base.EvalInputs) -> dict:
    out = {}
    probs = {name: {part: metrics.softmax(np.asarray(l[part], np.float64))
                    for part in ("forget", "test")}
             for name, l in inp.logits.items()}
    for name, p in probs.items():
      out[name] = {"max_prob_forget": float(p["forget"].max(-1).mean())}
    if "retrain" in probs:
      ref = probs["retrain"]
      for name, p in probs.items():
        if name == "retrain":
          continue
        for part in ("forget", "test"):
          out[name][f"kl_{part}"] = float(divergences.kl(ref[part], p[part]).mean())
          out[name][f"js_{part}"] = float(divergences.js(ref[part], p[part]).mean())
      out["divergence"] = "mean over examples of KL(P_retrain || P_model) and JS, nats"
    order = [m for m in ("original", "retrain", "unlearned", "reference") if m in probs]
    if inp.out_dir is not None:
      y_forget = np.asarray(inp.y_train)[np.asarray(inp.forget_idx)]
      plot_phi(
          {m: phi_lib.logit_confidence_numpy(inp.logits[m]["forget"], y_forget) for m in order},
          inp.out_dir / FIGURE_NAME,
          title=f"{inp.cfg.setting}: phi on D_f ({inp.forget_idx.size} images)")
      out["figure"] = FIGURE_NAME
    return out


def plot_phi(phis: dict, path, title: str = "") -> None:
  """Histograms of phi of each model (one panel each, shared bins) into a PNG."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  names = list(phis)
  fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 2.8), sharey=True,
                           squeeze=False)
  values = np.concatenate([np.asarray(v, np.float64).ravel() for v in phis.values()])
  lo, hi = float(np.min(values)), float(np.max(values))
  bins = np.linspace(lo, hi + 1e-6, 26)
  for ax, name in zip(axes[0], names):
    ax.hist(phis[name], bins=bins, color="tab:blue", edgecolor="white")
    ax.axvline(0.0, color="gray", lw=0.8)
    ax.set_title(name)
    ax.set_xlabel("phi = log(p_y / (1 - p_y))")
  axes[0][0].set_ylabel("examples of D_f")
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  try:
    workdir_lib.save_figure(fig, path, dpi=100)   # whole or not at all
  finally:
    plt.close(fig)
