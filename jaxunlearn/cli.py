"""Command line: ``jaxunlearn COMMAND [flags]``; ``jaxunlearn --help`` lists the commands.

Overrides use ml_collections syntax, e.g. ``--config.unlearn.lam=0.001``.
``--config.plugins='("my_module",)'`` imports a user's own plugins before the
config file is read, so their config blocks accept overrides too. Bad input
prints one line to stderr and exits with status 2; a failure during work (a
full disk) one line and status 1; a plugin that raises
(:class:`~jaxunlearn.errors.PluginError`) one line and status 1; an interrupt
the line to resume and status 130. ``--debug`` adds the traceback.
"""

from __future__ import annotations

import os
import re
import sys
import traceback

from absl import flags
from ml_collections import config_flags

from jaxunlearn import config as config_lib

__all__ = ["main", "entry", "COMMANDS"]

COMMANDS = {
    "run": "train the original (once per work dir), retrain, unlearn and evaluate; writes "
           "results.json and results.md",
    "audit": "per-example audits: populations of models, the epsilon-score and U-LiRA; writes "
             "audit.json and audit.md",
    "config": "print every config field of a config file with its value and description",
    "methods": "list the unlearning methods",
    "evaluators": "list the evaluators",
    "statistics": "list the audit statistics",
    "datasets": "list the datasets",
    "models": "list the models",
    "transforms": "list the data transforms",
}
LISTS = ("methods", "evaluators", "statistics", "datasets", "models", "transforms")

USAGE = "usage: jaxunlearn COMMAND [flags]; jaxunlearn --help lists the commands"


def main_help() -> str:
  width = max(map(len, COMMANDS))
  lines = ["usage: jaxunlearn COMMAND [flags]", "",
           "Machine unlearning for JAX/Flax models (the paper's lightweight method and "
           "baselines), with membership-inference, backdoor and per-example audits.", "",
           "commands:"]
  lines += [f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()]
  lines += ["", "jaxunlearn COMMAND --help says more about a command; --debug prints the "
            "traceback of an error (e.g. of a plugin that raises).", "",
            "examples:",
            "  jaxunlearn run --config configs/quick.py --workdir runs/quick",
            "  jaxunlearn audit --config configs/quick_audit.py --workdir runs/quick_audit",
            "  jaxunlearn config --config configs/quick.py"]
  return "\n".join(lines)


def command_help(command: str) -> str:
  """The help of one command: what it does, its flags and how to set config fields."""
  lines = [f"usage: jaxunlearn {command} "
           + ("--config FILE --workdir DIR [--wait] [--config.FIELD=VALUE ...]"
              if command in ("run", "audit") else
              "--config FILE [--config.FIELD=VALUE ...]" if command == "config" else
              "[--config.plugins='(\"my_module\",)']"), "", COMMANDS[command] + ".", ""]
  if command in ("run", "audit", "config"):
    lines += ["flags:",
              "  --config FILE        a config file defining get_config() (configs/*.py);",
              "                       FILE:ARG passes ARG to get_config, e.g. "
              "configs/quick_methods.py:salun"]
  if command in ("run", "audit"):
    lines += ["  --workdir DIR        checkpoints and results; finished stages there are reused",
              "  --wait               if another run holds the work dir, wait instead of "
              "refusing"]
  lines += ["  --debug              on an error, print its traceback too (e.g. of a plugin that "
            "raises)",
            "  --config.FIELD=VALUE override a config field, e.g. --config.unlearn.lam=0.01,",
            "                       --config.forget.classes='(3,)'; "
            "`jaxunlearn config --config FILE` lists every field",
            "  --config.plugins='(\"my_module\",)'  import your own plugins first "
            "(methods, evaluators, statistics, datasets, ...)"]
  if command == "run":
    lines += ["", "outputs: WORKDIR/results.json, WORKDIR/results.md, WORKDIR/checkpoints/"]
  elif command == "audit":
    lines += ["", "outputs: WORKDIR/audit.json, WORKDIR/audit.md, WORKDIR/phi/, the statistics' "
              "plots (audit_*.png)"]
  return "\n".join(lines)


def _define_flags(flag_argv: list[str]) -> flags.FlagValues:
  # ml_collections loads the config file into sys.modules["config_config"] and, on a second call
  # in one process, executes the new file into the old module: a file without get_config() would
  # then inherit the previous file's. Start from a fresh module each time.
  sys.modules.pop("config_config", None)
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


def _plugin_modules(flag_argv: list[str]):
  """The modules of a ``--config.plugins=...`` override."""
  import ast
  for arg in flag_argv:
    if arg.startswith("--config.plugins="):
      text = arg.split("=", 1)[1]
      try:
        return ast.literal_eval(text)
      except (ValueError, SyntaxError):
        return text
  return ()


def _list(kind: str) -> int:
  from jaxunlearn import plugins
  rows = plugins.listing(kind)
  width = max([len(n) for n, _ in rows] + [10])
  for name, text in rows:
    print(f"{name:<{width}}  {text}")
  return 0


def _error(message: str, error: BaseException | None = None, debug: bool = False, *,
           status: int = 2) -> int:
  if debug and error is not None:
    traceback.print_exception(error, file=sys.stderr)
  print(f"jaxunlearn: error: {message}", file=sys.stderr)
  return status


def _failure(error: BaseException, debug: bool) -> int:
  """A plugin that raised: one line naming it (the traceback too with ``--debug``), status 1."""
  _error(f"{error}" + ("" if debug else "; --debug shows the traceback"), error, debug)
  return 1


def _interrupted() -> int:
  print("jaxunlearn: interrupted; finished stages are saved, rerun to resume", file=sys.stderr)
  return 130


def main(argv=None) -> int:
  argv = list(sys.argv if argv is None else argv)
  debug = "--debug" in argv[1:]
  argv = argv[:1] + [a for a in argv[1:] if a != "--debug"]
  if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
    print(main_help() if len(argv) >= 2 else USAGE, file=sys.stdout if len(argv) >= 2
          else sys.stderr)
    return 0 if len(argv) >= 2 else 2
  command = argv[1]
  if command not in COMMANDS:
    return _error(f"unknown command {command!r}; use one of {', '.join(COMMANDS)} "
                  "(jaxunlearn --help)")
  rest = argv[2:]
  if any(a in ("-h", "--help", "-help", "--helpfull") for a in rest):
    print(command_help(command))
    return 0
  from jaxunlearn import plugins
  from jaxunlearn.errors import JaxUnlearnError, PluginError
  try:
    plugins.import_modules(_plugin_modules(rest))
    rest = [plugins.rename_flag(a) for a in rest]
  except PluginError as e:
    return _failure(e, debug)
  except JaxUnlearnError as e:
    return _error(str(e), e, debug)
  if command in LISTS:
    unknown = [a for a in rest if not a.startswith("--config.plugins=")]
    if unknown:
      return _error(f"{command} takes only --config.plugins, got {unknown[0]!r}")
    return _list(command)
  flag_argv = [argv[0], *(_expand_user(a) for a in rest)]
  fv = _define_flags(flag_argv)
  from absl import logging as absl_logging
  verbosity = absl_logging.get_verbosity()
  # ml_collections logs a warning of its own for get_config() returning None: one line is ours.
  absl_logging.set_verbosity(absl_logging.ERROR)
  try:
    leftover = fv(flag_argv)[1:]
    config = fv.config
    if config is not None:
      config_lib.check_loaded(config, f"the config file {_config_path(flag_argv)}")
      config.to_dict()  # A config file that failed to load raises only when read.
    elif fv["config"].present:
      config_lib.check_loaded(None, f"the config file {_config_path(flag_argv)}")
  except SystemExit as e:
    # A config file is user code; sys.exit() in it must not end the program with status 0.
    return _error(f"the config file {_config_path(flag_argv)} called sys.exit({e.code!r}) "
                  "while it was loaded; get_config() must return a ConfigDict (see "
                  "configs/quick.py)", e, debug)
  except PluginError as e:
    return _failure(e, debug)
  except JaxUnlearnError as e:
    return _error(str(e), e, debug)
  except flags.IllegalFlagValueError as e:
    return _error(_bad_value(fv, e, command))
  except flags.Error as e:
    return _error(f"bad flags: {_last_line(e)}; jaxunlearn {command} --help lists the flags")
  except (AttributeError, KeyError) as e:
    # A locked ConfigDict refuses --config.X=... for a field it lacks, and a misspelt block
    # (--config.unlern.lam) fails while its parents are looked up: both are the flag's fault.
    if "get_config" in str(e):
      return _error("the config file defines no get_config(); a config file is a Python "
                    "file with def get_config(): returning a ConfigDict (see configs/quick.py)")
    unknown = _unknown_override(e, flag_argv)
    if unknown is not None:
      return _error(unknown)
    key, guess, _ = _missing_key(e)
    if guess:   # ConfigDict's KeyError, e.g. c.unlern.lam in get_config()
      return _error(f"cannot load the config file: its get_config() names an unknown config "
                    f"field {key!r} (did you mean \"{guess}\"?)")
    return _error(f"cannot load the config file: {type(e).__name__}: {_last_line(e)}")
  except Exception as e:  # pylint: disable=broad-except
    # The config file is user code: it may fail to be found, parsed or run.
    return _error(f"cannot load the config file: {type(e).__name__}: {_last_line(e)}", e, debug)
  finally:
    absl_logging.set_verbosity(verbosity)
  if leftover:
    return _error(f"unexpected argument {leftover[0]!r}: jaxunlearn {command} takes only flags "
                  f"(--config FILE, --workdir DIR, --config.FIELD=VALUE); write flags with "
                  f"'=' or quote values with spaces (jaxunlearn {command} --help)")
  if config is None:
    return _error(f"--config is required; jaxunlearn {command} --help")
  if command == "config":
    return _print_config(config, debug)
  if fv.workdir is None:
    return _error(f"--workdir is required; jaxunlearn {command} --help")

  from jaxunlearn import parallel, workdir as workdir_lib
  try:
    # Multi-process JAX must start before anything touches a device.
    parallel.initialize_distributed(config)
    if command == "audit":
      from jaxunlearn import auditor
      results = auditor.run_audit(config, fv.workdir, wait=fv.wait)
    else:
      from jaxunlearn import pipeline
      results = pipeline.run(config, fv.workdir, wait=fv.wait)
  except PluginError as e:
    return _failure(e, debug)
  except JaxUnlearnError as e:
    return _error(str(e), e, debug, status=e.exit_status)
  except OSError as e:
    if workdir_lib.error_number(e) not in workdir_lib.NO_SPACE:
      raise
    # A full disk met by a write that does not report it itself: still one line.
    return _error(str(workdir_lib.write_error(e.filename or fv.workdir, e)), e, debug, status=1)
  except KeyboardInterrupt:
    return _interrupted()
  try:
    summary = audit_summary_line(results) if command == "audit" else summary_line(results)
  except PluginError as e:
    return _failure(e, debug)
  if command == "audit":
    print(summary)
    print(f"results: {fv.workdir}/audit.json, {fv.workdir}/audit.md")
    return 0
  print(summary)
  print(f"results: {fv.workdir}/results.json, {fv.workdir}/results.md")
  return 0


def _config_path(flag_argv: list[str]) -> str:
  """The ``--config`` file named on the command line."""
  for i, arg in enumerate(flag_argv):
    if arg.startswith("--config="):
      return arg.split("=", 1)[1]
    if arg == "--config" and i + 1 < len(flag_argv):
      return flag_argv[i + 1]
  return "?"


def _print_config(config, debug: bool = False) -> int:
  from jaxunlearn import plugins
  from jaxunlearn.errors import JaxUnlearnError, PluginError
  try:
    cfg = plugins.check_config(config)
  except PluginError as e:
    return _failure(e, debug)
  except JaxUnlearnError as e:
    return _error(str(e), e, debug)
  rows = plugins.describe(cfg)
  width = max(len(n) for n, _, _ in rows)
  for name, value, doc in rows:
    print(f"{name:<{width}}  {value!r:<24}  {doc}")
  return 0


_PATH_FLAGS = ("--config", "--workdir", "--config.dataset", "--config.forget.index_file")


def _expand_user(arg: str) -> str:
  """``--workdir=~/x`` as a shell expands ``--workdir ~/x``: a leading ``~`` is the home folder
  (``--config.dataset=npz:~/d.npz`` too), never a folder literally named ``~``."""
  name, eq, value = arg.partition("=")
  if not eq or name not in _PATH_FLAGS:
    return arg
  kind, colon, path = value.partition(":")
  if colon and path.startswith("~") and name == "--config.dataset":
    return f"{name}={kind}:{os.path.expanduser(path)}"
  return f"{name}={os.path.expanduser(value)}" if value.startswith("~") else arg


def _missing_key(error: BaseException) -> tuple[str, str | None, str | None]:
  """``(key, nearest name, dotted path looked up)`` of a ConfigDict's KeyError (or an
  AttributeError wrapping one), whose text is a repr with a "Did you mean" line."""
  text = error.args[0] if error.args else ""
  while isinstance(text, BaseException):  # AttributeError(KeyError(...)): the KeyError's text
    text = text.args[0] if text.args else ""
  text = str(text)
  guess = re.search(r'Did you mean "([^"]+)"', text)
  lookup = re.search(r"Attempting to lookup: (\S+)", text)
  key = text.splitlines()[0].strip().strip("\"'") if text else ""
  return key, guess and guess.group(1), lookup and lookup.group(1)


def _unknown_override(error: BaseException, flag_argv: list[str]) -> str | None:
  """The one line for a ``--config.X=...`` naming a field the config lacks, or None when no
  override names the missing key (then the config file itself failed)."""
  key, guess, lookup = _missing_key(error)
  for arg in flag_argv[1:]:
    if not arg.startswith("--config."):
      continue
    name, _, value = arg.partition("=")
    path = name[len("--config."):].split(".")
    if lookup and ".".join(path) == lookup:
      *parent, _ = path
      return (f"bad flag {name}: config field {'.'.join(parent)} is a value, not a block; "
              "`jaxunlearn config --config FILE` lists every field")
    if key in path:
      field = ".".join(path[:path.index(key) + 1])
      hint = f'; did you mean "{guess}"?' if guess else ""
      return (f"bad flag {name}: unknown config field {field}{hint} (`jaxunlearn config "
              "--config FILE` lists every field)")
  return None


def _bad_value(fv, error: BaseException, command: str) -> str:
  """The one line for ``--config.X=VALUE`` whose value does not parse as the field's type."""
  match = re.match(r"flag --config\.([^=]+)=(.*?): (.*)$", _last_line(error))
  if not match:
    return f"bad flags: {_last_line(error)}; jaxunlearn {command} --help lists the flags"
  field, value, _ = match.groups()   # Python's own words ("could not convert ...") say less
  try:
    flag = fv[f"config.{field}"]
    kind, current = flag.flag_type(), flag.value
  except (KeyError, AttributeError):
    return f"bad flags: {_last_line(error)}; jaxunlearn {command} --help lists the flags"
  article = "an" if kind[:1] in "aeiou" else "a"
  return (f"bad flags: bad value {value!r} for config field {field}: expected {article} {kind} "
          f"(the config has {current!r})")


def _last_line(error: BaseException) -> str:
  """The gist of a message that may embed a traceback: its last non-empty line."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  return " ".join(lines[-1:]) or type(error).__name__


def summary_line(r: dict) -> str:
  """One line: each evaluator's summary (accuracy first), the speedup, replaced built-ins."""
  from jaxunlearn import evaluators, registry
  parts = []
  for name in r.get("evaluators", []):
    key = evaluators.section_name(name) if name in evaluators.names() else name
    if key in r and name in evaluators.names():
      ev = evaluators.get(name)()
      with registry.guard("evaluator", name, ev, "summary"):
        text = ev.summary(r[key])
      if text:
        parts.append(text)
    if name == "accuracy" and "speedup" in r:
      once = "teacher store built" if "teacher" in r else "reused reference"
      parts.append(f"speedup={r['speedup']:.2f}x ({once}: {r['speedup_amortized']:.1f}x)")
  if r.get("replaced"):
    parts.append("replaced built-ins: " + ", ".join(f"{k} by {v}"
                                                    for k, v in r["replaced"].items()))
  return "; ".join(parts)


def audit_summary_line(r: dict) -> str:
  """One line: each statistic's summary (F of each epsilon population, U-LiRA's accuracies)."""
  from jaxunlearn import audits, registry
  parts = []
  for name in r.get("statistics", []):
    if name in audits.names() and name in r:
      st = audits.get(name)()
      with registry.guard("audit statistic", name, st, "summary"):
        text = st.summary(r[name])
      if text:
        parts.append(text)
  if r.get("replaced"):
    parts.append("replaced built-ins: " + ", ".join(f"{k} by {v}"
                                                    for k, v in r["replaced"].items()))
  return "; ".join(parts)


def entry() -> None:
  from jaxunlearn import scripts
  scripts.interrupt_once()
  try:
    code = main()
  except KeyboardInterrupt:   # outside the work (e.g. while jax is imported)
    code = _interrupted()
  if code == 130:
    # Ending the interpreter normally after an interrupt can crash (a segmentation fault)
    # while JAX/XLA or Orbax threads still run: flush and end the process at once. The work
    # directory's lock is released and every finished stage saved by now.
    scripts.exit_now(130)
  sys.exit(code)


if __name__ == "__main__":
  entry()
