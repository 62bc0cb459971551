"""The paper's time table (Fig. 10) with accuracy, MIA and backdoor figures.

    python experiments/speedup_table.py --configs configs/quick.py,configs/quick_backdoor.py --seeds 0,1 --out out/speedup

One row per setting: unlearning epochs, unlearning time, reference time,
total, retrain time and speedup (seconds of device work, compilation
excluded), then test accuracy, shadow-MIA balanced accuracy and backdoor
success of the original / retrained / unlearned models.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments import common  # noqa: E402

NAME = "speedup_table"
TIME = [("unlearn epochs", "unlearn_epochs_run"), ("unlearn s", "time_s.unlearn"),
        ("reference s", "time_s.reference"), ("total s", None), ("retrain s", "time_s.retrain"),
        ("speedup", "speedup"), ("speedup (reused ref.)", "speedup_amortized")]
TRIPLES = [("test acc", "models.{}.acc_test"), ("MIA bal. acc", "mia.{}.balanced_acc"),
           ("backdoor success", "backdoor.{}.attack_success")]
MODELS = ("original", "retrain", "unlearned")


def figures(r: dict) -> dict:
  out = {}
  for label, path in TIME:
    out[label] = (common.get(r, "time_s.unlearn") + common.get(r, "time_s.reference")
                  if path is None else common.get(r, path))
  for label, path in TRIPLES:
    for m in MODELS:
      out[f"{label} {m}"] = common.get(r, path.format(m))
  return out


def main(argv=None) -> dict:
  p = common.base_parser(__doc__.split("\n")[0], "configs/quick.py")
  p.add_argument("--configs", default="", help="comma-separated config files (overrides --config)")
  args = p.parse_args(argv)
  out = Path(args.out)
  paths = [c for c in (args.configs or args.config).split(",") if c]
  runs, rows = [], []
  for path in paths:
    per_seed = []
    for seed in common.seeds(args.seeds):
      cfg = common.load_config(path, args.set)
      cfg.seed = seed
      r = common.run(cfg, out / "work" / f"{Path(path).stem}-seed{seed}")
      runs.append({"config": path, "seed": seed, "results": r})
      per_seed.append(figures(r))
    keys = list(per_seed[0])
    stats = {k: common.mean_std([f[k] for f in per_seed]) for k in keys}
    row = [runs[-1]["results"]["setting"], runs[-1]["results"]["n_forget"]]
    row += [common.fmt(*stats[label]) for label, _ in TIME]
    row += [" / ".join(common.fmt(stats[f"{label} {m}"][0], 0) for m in MODELS)
            for label, _ in TRIPLES]
    rows.append(row)
  header = ["setting", "|D_f|", *(label for label, _ in TIME),
            *(f"{label} (orig / retrain / unlearned)" for label, _ in TRIPLES)]
  note = (f"Seeds {','.join(map(str, common.seeds(args.seeds)))}; times are mean ± std of wall seconds of device work, "
          "compilation excluded; the last columns are seed means.")
  text = common.write_outputs(out, NAME, header, rows, runs, common.provenance(), note)
  _plot_times(out / f"{NAME}.png", runs)
  print(text)
  return {"runs": runs, "markdown": text}


def _plot_times(path: Path, runs: list[dict]) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  settings = list(dict.fromkeys(r["results"]["setting"] for r in runs))
  parts = ("reference", "unlearn", "retrain")
  fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(settings), 3.6))
  for i, part in enumerate(parts):
    vals = [common.mean_std([common.get(r["results"], f"time_s.{part}") for r in runs
                             if r["results"]["setting"] == s])[0] for s in settings]
    ax.bar([j + (i - 1) * 0.27 for j in range(len(settings))], vals, width=0.27, label=part)
  ax.set_xticks(range(len(settings)), settings)
  ax.set_ylabel("seconds (device work)")
  ax.set_yscale("log")
  ax.legend()
  ax.set_title("Reference + unlearn vs retrain")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


if __name__ == "__main__":
  from jaxunlearn import scripts
  scripts.run(main)
