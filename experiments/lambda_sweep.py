"""λ sweep (paper Fig. 11/12): accuracy and backdoor success after unlearning.

    python experiments/lambda_sweep.py --config configs/quick_backdoor.py --seeds 0,1 --out out/lambda

For each seed the original, retrained and reference models are trained once
and reused; only the unlearning stage runs per λ.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments import common  # noqa: E402

NAME = "lambda_sweep"
METRICS = [("test acc", "models.unlearned.acc_test"),
           ("forget acc", "models.unlearned.acc_forget"),
           ("forget loss", "models.unlearned.loss_forget"),
           ("backdoor success", "backdoor.unlearned.attack_success"),
           ("MIA balanced acc", "mia.unlearned.balanced_acc")]


def main(argv=None) -> dict:
  p = common.base_parser(__doc__.split("\n")[0], "configs/quick_backdoor.py")
  p.add_argument("--lams", default="1,0.1,0.01,0.001,0.0001")
  args = p.parse_args(argv)
  out = Path(args.out)
  lams = [float(x) for x in args.lams.split(",")]
  runs, table = [], {}
  for seed in common.seeds(args.seeds):
    for lam in lams:
      cfg = common.load_config(args.config, args.set)
      cfg.seed = seed
      cfg.unlearn.lam = lam
      r = common.run(cfg, out / "work" / f"seed{seed}")
      runs.append({"seed": seed, "lam": lam, "results": r})
      for label, path in METRICS:
        table.setdefault((lam, label), []).append(common.get(r, path))
  base = runs[0]["results"]
  header = ["λ", *(label for label, _ in METRICS)]
  rows = [[lam, *(common.fmt(*common.mean_std(table[(lam, label)])) for label, _ in METRICS)]
          for lam in lams]
  ref_rows = [["retrained", *(common.fmt(*common.mean_std(
      [common.get(x["results"], path.replace("unlearned", "retrain")) for x in runs[::len(lams)]]))
      for _, path in METRICS)],
              ["original", *(common.fmt(*common.mean_std(
      [common.get(x["results"], path.replace("unlearned", "original")) for x in runs[::len(lams)]]))
      for _, path in METRICS)]]
  note = (f"Unlearned model after {base['config']['unlearn']['epochs']} epochs at each λ, "
          f"setting `{base['setting']}`, seeds {','.join(map(str, common.seeds(args.seeds)))}; mean ± std over seeds. "
          "The last two rows are the retrained and original models for comparison.")
  text = common.write_outputs(out, NAME, header, rows + ref_rows, runs,
                              common.provenance(cfg), note)
  stats = {label: [common.mean_std(table[(lam, label)]) for lam in lams] for label, _ in METRICS}
  common.plot(out / f"{NAME}.png", [
      {"x": lams, "xlabel": "λ", "ylabel": "test accuracy", "logx": True,
       "series": {"unlearned": tuple(zip(*stats["test acc"]))}},
      {"x": lams, "xlabel": "λ", "ylabel": "backdoor success / MIA", "logx": True,
       "series": {"backdoor success": tuple(zip(*stats["backdoor success"])),
                  "MIA balanced acc": tuple(zip(*stats["MIA balanced acc"]))}},
  ], title="λ sweep")
  print(text)
  return {"runs": runs, "markdown": text}


if __name__ == "__main__":
  from jaxunlearn import scripts
  scripts.run(main)
