"""Reference-set size sweep (paper Tables IV and V, scaled to the dataset).

    python experiments/reference_size_sweep.py --config configs/quick.py --seeds 0,1 --out out/refsize

The paper's MNIST sizes 2,000 / 4,000 / 6,000 / 10,000 / 15,000 of 60,000 are
the default fractions (1/30 ... 1/4 of the training set).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments import common  # noqa: E402

NAME = "reference_size_sweep"
METRICS = [("reference test acc", "models.reference.acc_test"),
           ("unlearned test acc", "models.unlearned.acc_test"),
           ("unlearned forget loss", "models.unlearned.loss_forget"),
           ("MIA balanced acc", "mia.unlearned.balanced_acc"),
           ("backdoor success", "backdoor.unlearned.attack_success"),
           ("reference s", "time_s.reference"),
           ("speedup", "speedup")]
PAPER_FRACTIONS = "0.03333,0.06667,0.1,0.16667,0.25"


def main(argv=None) -> dict:
  p = common.base_parser(__doc__.split("\n")[0], "configs/quick.py")
  p.add_argument("--sizes", default=PAPER_FRACTIONS,
                 help="reference sizes: fractions (< 1) of the training set or counts")
  args = p.parse_args(argv)
  out = Path(args.out)
  sizes = [float(x) if float(x) < 1 else int(float(x)) for x in args.sizes.split(",")]
  runs, table, counts = [], {}, {}
  for seed in common.seeds(args.seeds):
    for size in sizes:
      cfg = common.load_config(args.config, args.set)
      cfg.seed = seed
      cfg.reference.size = size
      cfg.reference.reuse = False   # each size trains its own reference model
      r = common.run(cfg, out / "work" / f"seed{seed}")
      runs.append({"seed": seed, "reference_size": size, "results": r})
      counts[size] = r["n_reference"]
      for label, path in METRICS:
        table.setdefault((size, label), []).append(common.get(r, path))
  header = ["|D_s|", *(label for label, _ in METRICS)]
  rows = [[counts[s], *(common.fmt(*common.mean_std(table[(s, label)])) for label, _ in METRICS)]
          for s in sizes]
  note = f"Setting `{runs[0]['results']['setting']}`, seeds {','.join(map(str, common.seeds(args.seeds)))}; mean ± std over seeds."
  text = common.write_outputs(out, NAME, header, rows, runs, common.provenance(cfg), note)
  stats = {label: [common.mean_std(table[(s, label)]) for s in sizes] for label, _ in METRICS}
  xs = [counts[s] for s in sizes]
  common.plot(out / f"{NAME}.png", [
      {"x": xs, "xlabel": "|D_s|", "ylabel": "test accuracy",
       "series": {"reference": tuple(zip(*stats["reference test acc"])),
                  "unlearned": tuple(zip(*stats["unlearned test acc"]))}},
      {"x": xs, "xlabel": "|D_s|", "ylabel": "seconds",
       "series": {"reference training": tuple(zip(*stats["reference s"]))}},
  ], title="reference-set size")
  print(text)
  return {"runs": runs, "markdown": text}


if __name__ == "__main__":
  from jaxunlearn import scripts
  scripts.run(main)
