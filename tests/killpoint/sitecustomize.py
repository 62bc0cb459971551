"""Pauses a ``jaxunlearn run`` subprocess at a chosen point, for kill tests.

Python imports ``sitecustomize`` at start-up from ``sys.path``, so a test puts
this folder on the subprocess's ``PYTHONPATH`` and sets:

* ``JAXUNLEARN_TEST_PAUSE=POINT:STAGE``, POINT one of
  - ``fit``: after the first epoch of training stage STAGE ('original',
    'retrain', 'reference'), when nothing of that stage is saved;
  - ``save``: after Orbax committed the files of the stage whose directory
    name starts with STAGE, before its COMPLETE.json marker is written;
  - ``unlearn``: inside the unlearning stage, once the reference outputs on
    D_f are computed and before the first unlearning step;
  - ``results``: after results.json is written, before results.md;
  - ``population``: in ``jaxunlearn audit``, once the first chunk of the
    population named STAGE is saved;
* ``JAXUNLEARN_TEST_PAUSE_FILE=PATH``: written when the pause point is
  reached, so the test knows when to send SIGKILL;
* ``JAXUNLEARN_TEST_RESUME_FILE=PATH`` (optional): the run goes on once this
  file exists.

The process then sleeps until it is killed (or resumed). Without the variables this file
does nothing. It wraps private functions; if one is renamed it raises at
start-up instead of silently never pausing.
"""

import os

_SPEC = os.environ.get("JAXUNLEARN_TEST_PAUSE")

if _SPEC:
  import time
  from pathlib import Path

  _POINT, _, _STAGE = _SPEC.partition(":")
  _FLAG = Path(os.environ["JAXUNLEARN_TEST_PAUSE_FILE"])

  _RESUME = os.environ.get("JAXUNLEARN_TEST_RESUME_FILE")

  def _pause():
    _FLAG.write_text(str(os.getpid()))
    while not (_RESUME and Path(_RESUME).exists()):
      time.sleep(0.1 if _RESUME else 60)

  def _wrap(module, name, make):
    original = getattr(module, name)  # AttributeError if it was renamed.
    setattr(module, name, make(original))

  if _POINT == "fit":
    from jaxunlearn import train

    def _fit_hook(check_finite):
      def wrapped(losses, stage, epoch, steps_per_epoch):
        check_finite(losses, stage, epoch, steps_per_epoch)
        if stage == _STAGE and epoch == 0:
          _pause()
      return wrapped
    _wrap(train, "_check_finite", _fit_hook)
  elif _POINT == "save":
    from jaxunlearn import checkpoint

    def _save_hook(write_marker):
      def wrapped(path, content):
        if Path(path).name.startswith(_STAGE):
          _pause()
        write_marker(path, content)
      return wrapped
    _wrap(checkpoint, "_write_marker", _save_hook)
  elif _POINT == "unlearn":
    from jaxunlearn import unlearn

    def _unlearn_hook(host_driver):
      def wrapped(*args, **kwargs):
        _pause()
        return host_driver(*args, **kwargs)
      return wrapped
    _wrap(unlearn, "unlearn", _unlearn_hook)
  elif _POINT == "results":
    from jaxunlearn import workdir

    def _results_hook(atomic_write):
      def wrapped(path, content, **kwargs):
        if Path(path).name == "results.md":
          _pause()
        atomic_write(path, content, **kwargs)
      return wrapped
    _wrap(workdir, "atomic_write", _results_hook)
  elif _POINT == "population":
    from jaxunlearn import populations

    def _population_hook(chunk_saved):
      def wrapped(pop, chunk, stage):
        chunk_saved(pop, chunk, stage)
        if pop.name == _STAGE and chunk == 0:
          _pause()
      return wrapped
    _wrap(populations, "pause_point_after_chunk", _population_hook)
  else:
    raise ValueError(f"unknown JAXUNLEARN_TEST_PAUSE point {_POINT!r}")
