"""Command line: ``jaxunlearn run --config configs/X.py --workdir DIR``.

Overrides use ml_collections syntax, e.g. ``--config.unlearn.lam=0.001``.
Bad input prints one line to stderr and exits with status 2.
"""

from __future__ import annotations

import sys

from absl import flags
from ml_collections import config_flags

USAGE = ("usage: jaxunlearn run --config configs/quick.py --workdir DIR "
         "[--config.FIELD=VALUE ...]")


def _define_flags() -> flags.FlagValues:
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).", flag_values=fv,
                                  lock_config=True)
  flags.DEFINE_string("workdir", None, "Work directory for checkpoints and results.",
                      flag_values=fv)
  return fv


def main(argv=None) -> int:
  argv = list(sys.argv if argv is None else argv)
  if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
    print(USAGE)
    return 0 if len(argv) >= 2 else 2
  command = argv[1]
  if command != "run":
    print(f"jaxunlearn: unknown command {command!r}; {USAGE}", file=sys.stderr)
    return 2
  fv = _define_flags()
  try:
    fv([argv[0], *argv[2:]])
  except flags.Error as e:
    msg = " ".join(str(e).split())
    print(f"jaxunlearn: bad flags: {msg}", file=sys.stderr)
    return 2
  if fv.config is None or fv.workdir is None:
    print(f"jaxunlearn: --config and --workdir are required; {USAGE}", file=sys.stderr)
    return 2

  from jaxunlearn import parallel
  from jaxunlearn.errors import JaxUnlearnError
  try:
    # Multi-process JAX must start before anything touches a device.
    parallel.initialize_distributed(fv.config)
    from jaxunlearn import pipeline
    results = pipeline.run(fv.config, fv.workdir)
  except JaxUnlearnError as e:
    print(f"jaxunlearn: error: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print("jaxunlearn: interrupted; finished stages are saved, rerun to resume",
          file=sys.stderr)
    return 130
  print(summary_line(results))
  print(f"results: {fv.workdir}/results.json, {fv.workdir}/results.md")
  return 0


def summary_line(r: dict) -> str:
  m = r["models"]
  parts = [f"{name} acc_test={m[name]['acc_test']:.4f} loss_forget={m[name]['loss_forget']:.4g}"
           for name in ("original", "retrain", "reference", "unlearned") if name in m]
  if "speedup" in r:
    parts.append(f"speedup={r['speedup']:.2f}x (reused reference: {r['speedup_amortized']:.1f}x)")
  return "; ".join(parts)


def entry() -> None:
  sys.exit(main())


if __name__ == "__main__":
  entry()
