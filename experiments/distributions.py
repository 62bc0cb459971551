"""Output distributions (paper Fig. 13 and 16): max-softmax histograms on D_f.

    python experiments/distributions.py --config configs/quick.py --seeds 0 --out out/dist

Left: the retrained model against the reference model (Fig. 13, does the
reference point where retraining would?). Right: the original against the
unlearned model (Fig. 16, did unlearning move the posteriors?). Also writes
the KL and Jensen-Shannon divergences of each model's posteriors on D_f and
test to the retrained model's.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments import common  # noqa: E402

NAME = "distributions"
MODELS = ("original", "retrain", "reference", "unlearned")


def posteriors(cfg, workdir: Path, results: dict) -> dict:
  """Softmax outputs of every model on D_f and on the test set."""
  from jaxunlearn import metrics, request, stages, train
  out = {}
  with request.open_request(cfg, workdir) as req:
    x_f = req.x_train[req.splits.forget_idx]
    for name in MODELS:
      m = stages.restore_stage(req, results["stages"][name])
      out[name] = {
          "forget": metrics.softmax(train.predict(m.apply_fn, m.params, x_f)),
          "test": metrics.softmax(train.predict(m.apply_fn, m.params, req.data.x_test)),
      }
  return out


def kl(p, q) -> float:
  """Mean over rows of KL(p || q), from :mod:`jaxunlearn.divergences`."""
  from jaxunlearn import divergences
  return float(np.mean(divergences.kl(p, q)))


def js(p, q) -> float:
  from jaxunlearn import divergences
  return float(np.mean(divergences.js(p, q)))


def main(argv=None) -> dict:
  p = common.base_parser(__doc__.split("\n")[0], "configs/quick.py")
  args = p.parse_args(argv)
  out = Path(args.out)
  runs, post_all = [], {m: {"forget": [], "test": []} for m in MODELS}
  table = {}
  for seed in common.seeds(args.seeds):
    cfg = common.load_config(args.config, args.set)
    cfg.seed = seed
    workdir = out / "work" / f"seed{seed}"
    r = common.run(cfg, workdir)
    post = posteriors(cfg, workdir, r)
    runs.append({"seed": seed, "results": {k: v for k, v in r.items() if k != "config"}})
    for m in MODELS:
      for part in ("forget", "test"):
        post_all[m][part].append(post[m][part])
        table.setdefault((m, f"KL to retrain, {part}"), []).append(
            kl(post["retrain"][part], post[m][part]))
        table.setdefault((m, f"JS to retrain, {part}"), []).append(
            js(post["retrain"][part], post[m][part]))
      table.setdefault((m, "mean max-softmax on D_f"), []).append(
          float(post[m]["forget"].max(-1).mean()))
  labels = ["mean max-softmax on D_f", "KL to retrain, forget", "JS to retrain, forget",
            "KL to retrain, test", "JS to retrain, test"]
  rows = [[m, *(common.fmt(*common.mean_std(table[(m, lab)])) for lab in labels)] for m in MODELS]
  text = common.write_outputs(out, NAME, ["model", *labels], rows, runs,
                              common.provenance(cfg), f"Seeds {','.join(map(str, common.seeds(args.seeds)))}; mean ± std.")
  _plot(out / f"{NAME}.png", {m: np.concatenate(post_all[m]["forget"]) for m in MODELS})
  print(text)
  return {"runs": runs, "markdown": text}


def _plot(path: Path, post: dict) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  bins = np.linspace(0, 1, 26)
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
  for ax, pair, title in ((axes[0], ("retrain", "reference"), "Fig. 13: retrained vs reference"),
                          (axes[1], ("original", "unlearned"), "Fig. 16: before vs after")):
    for name in pair:
      ax.hist(post[name].max(-1), bins=bins, alpha=0.55, label=name)
    ax.set_xlabel("max softmax on D_f")
    ax.set_ylabel("count")
    ax.set_title(title)
    ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


if __name__ == "__main__":
  from jaxunlearn import scripts
  scripts.run(main)
