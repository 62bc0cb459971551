"""Command line: ``jaxunlearn run|audit --config configs/X.py --workdir DIR [--wait]``.

``audit`` runs the populations, the epsilon-score and U-LiRA
(:mod:`jaxunlearn.auditor`) and writes ``audit.json`` / ``audit.md``.

Overrides use ml_collections syntax, e.g. ``--config.unlearn.lam=0.001``.
``--config.plugins='("my_module",)'`` imports a user's own methods and
evaluators before the config file is read, so their config blocks accept
overrides too. ``jaxunlearn methods`` / ``jaxunlearn evaluators`` list what is
registered. Bad input prints one line to stderr and exits with status 2.
"""

from __future__ import annotations

import sys

from absl import flags
from ml_collections import config_flags

USAGE = ("usage: jaxunlearn run|audit --config configs/quick.py --workdir DIR [--wait] "
         "[--config.FIELD=VALUE ...] | jaxunlearn methods | jaxunlearn evaluators")


def _define_flags(flag_argv: list[str]) -> flags.FlagValues:
  fv = flags.FlagValues()
  # sys_argv: the override flags (--config.x=...) are found in these arguments,
  # not in sys.argv, so main(argv) also works when called from Python.
  config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).", flag_values=fv,
                                  lock_config=True, sys_argv=flag_argv)
  flags.DEFINE_string("workdir", None, "Work directory for checkpoints and results.",
                      flag_values=fv)
  flags.DEFINE_bool("wait", False, "If another run holds the work directory, wait for it.",
                    flag_values=fv)
  return fv


def _preload_plugins(flag_argv: list[str]) -> None:
  """Imports the modules of a ``--config.plugins=...`` override before the config file loads."""
  import ast
  from jaxunlearn import config as config_lib
  for arg in flag_argv:
    if arg.startswith("--config.plugins="):
      text = arg.split("=", 1)[1]
      try:
        value = ast.literal_eval(text)
      except (ValueError, SyntaxError):
        value = text
      config_lib.load_plugins(value)


def _list(kind: str) -> int:
  if kind == "methods":
    from jaxunlearn import methods
    for name in methods.names():
      m = methods.get(name)()
      hp = ", ".join(f"{k}={v}" for k, v in m.hparams.items())
      print(f"{name:16s} {m.description or type(m).__doc__ or ''}"
            + (f" [{hp}]" if hp else "") + (" (trains a reference model)"
                                            if m.needs_reference else ""))
  else:
    from jaxunlearn import evaluators
    for name in evaluators.names():
      e = evaluators.get(name)
      doc = (e.__doc__ or e.title or "").strip().splitlines()[0] if (e.__doc__ or e.title) else ""
      print(f"{name:16s} {e.title or doc}" + (" (always runs)" if e.always else ""))
  return 0


def main(argv=None) -> int:
  argv = list(sys.argv if argv is None else argv)
  if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
    print(USAGE)
    return 0 if len(argv) >= 2 else 2
  command = argv[1]
  if command in ("methods", "evaluators"):
    return _list(command)
  if command not in ("run", "audit"):
    print(f"jaxunlearn: unknown command {command!r}; {USAGE}", file=sys.stderr)
    return 2
  flag_argv = [argv[0], *argv[2:]]
  fv = _define_flags(flag_argv)
  from jaxunlearn.errors import JaxUnlearnError
  try:
    _preload_plugins(flag_argv)
  except JaxUnlearnError as e:
    print(f"jaxunlearn: error: {e}", file=sys.stderr)
    return 2
  try:
    fv(flag_argv)
    config = fv.config
    if config is not None:
      config.to_dict()  # A config file that failed to load raises only when read.
  except flags.Error as e:
    print(f"jaxunlearn: bad flags: {_last_line(e)}", file=sys.stderr)
    return 2
  except AttributeError as e:
    # A locked ConfigDict refuses --config.X=... for a field it lacks.
    key = str(e).strip("\"'")
    given = [a.split("=")[0] for a in flag_argv if a.startswith("--config.")]
    named = [a for a in given if key in a.split(".")[1:]] or [key]
    print(f"jaxunlearn: bad flags: unknown config field {named[0]!r}; see "
          "jaxunlearn/config.py for the valid fields", file=sys.stderr)
    return 2
  except Exception as e:  # pylint: disable=broad-except
    # The config file is user code: it may fail to be found, parsed or run.
    print(f"jaxunlearn: cannot load the config file: {type(e).__name__}: {_last_line(e)}",
          file=sys.stderr)
    return 2
  if config is None or fv.workdir is None:
    print(f"jaxunlearn: --config and --workdir are required; {USAGE}", file=sys.stderr)
    return 2

  from jaxunlearn import parallel
  try:
    # Multi-process JAX must start before anything touches a device.
    parallel.initialize_distributed(config)
    if command == "audit":
      from jaxunlearn import auditor
      results = auditor.run_audit(config, fv.workdir, wait=fv.wait)
    else:
      from jaxunlearn import pipeline
      results = pipeline.run(config, fv.workdir, wait=fv.wait)
  except JaxUnlearnError as e:
    print(f"jaxunlearn: error: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print("jaxunlearn: interrupted; finished stages are saved, rerun to resume",
          file=sys.stderr)
    return 130
  if command == "audit":
    print(audit_summary_line(results))
    print(f"results: {fv.workdir}/audit.json, {fv.workdir}/audit.md")
    return 0
  print(summary_line(results))
  print(f"results: {fv.workdir}/results.json, {fv.workdir}/results.md")
  return 0


def _last_line(error: BaseException) -> str:
  """The gist of a message that may embed a traceback: its last non-empty line."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  return " ".join(lines[-1:]) or type(error).__name__


def summary_line(r: dict) -> str:
  """One line: each evaluator's summary (accuracy first) and the speedup."""
  from jaxunlearn import evaluators
  parts = []
  for name in r.get("evaluators", []):
    key = evaluators.section_name(name) if name in evaluators.names() else name
    if key in r and name in evaluators.names():
      text = evaluators.get(name)().summary(r[key])
      if text:
        parts.append(text)
    if name == "accuracy" and "speedup" in r:
      parts.append(f"speedup={r['speedup']:.2f}x (reused reference: "
                   f"{r['speedup_amortized']:.1f}x)")
  return "; ".join(parts)


def audit_summary_line(r: dict) -> str:
  """One line: F of each epsilon population, then U-LiRA's balanced accuracies."""
  parts = ["F: " + " ".join(f"{k}={v['forgetting_quality']:.3f}"
                            for k, v in r["epsilon"].items())]
  if r.get("ulira"):
    parts.append("U-LiRA balanced_acc: " + " ".join(
        f"{k}={v['balanced_acc']:.3f}" for k, v in r["ulira"].items()))
  return "; ".join(parts)


def entry() -> None:
  sys.exit(main())


if __name__ == "__main__":
  entry()
