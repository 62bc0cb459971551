"""Time of the per-example epsilon score at the challenge's scale.

    PYTHONPATH=. python benchmarks/epsilon_speed.py
    PYTHONPATH=. python benchmarks/epsilon_speed.py --models 512 --examples 1000

Draws phi for ``--models`` unlearned and ``--models`` retrained models on
``--examples`` forget examples (both N(0, 1): the oracle case, whose pooled
range of about 6.5 units gives about 650 single and 160,000 double-threshold
rules per example) and times ``jaxunlearn.audits.epsilon.epsilon_report``
once.

Measured 2026-11-29 on a 2-core CPU (shared with other jobs), numpy 2.4.6:
512 + 512 models x 1,000 examples in 4.2 s (4.2 ms per example;
forgetting quality 0.184, median epsilon 1.61).
"""

from __future__ import annotations

import time

import numpy as np

from jaxunlearn.audits import epsilon
from jaxunlearn import scripts


def main(argv=None) -> dict:
  parser = scripts.parser(__doc__.splitlines()[0])
  parser.add_argument("--models", type=int, default=512, help="models per side")
  parser.add_argument("--examples", type=int, default=1000, help="forget examples")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  rng = np.random.default_rng(args.seed)
  unlearned = rng.normal(size=(args.models, args.examples))
  retrained = rng.normal(size=(args.models, args.examples))
  t0 = time.perf_counter()
  report = epsilon.epsilon_report(unlearned, retrained)
  seconds = time.perf_counter() - t0
  print(f"{args.models} + {args.models} models x {args.examples} examples: {seconds:.2f} s "
        f"({1e3 * seconds / args.examples:.2f} ms per example); forgetting quality "
        f"{report['forgetting_quality']:.3f}, median epsilon {report['eps_median']:.2f}")
  return {"seconds": seconds, **report}


if __name__ == "__main__":
  scripts.run(main)
