"""Pytest setup: JAX on CPU (deterministic, no GPU needed), one compilation cache per session.

The suite compiles the same small programs many times (every pipeline run
builds fresh jitted closures, and CLI tests start new processes). A persistent
compilation cache in a fresh temporary folder, shared with subprocesses
through the environment, lets later compiles of an identical program load it
instead. It starts empty each session, so no test depends on an earlier one.
"""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _CACHE = tempfile.mkdtemp(prefix="jaxunlearn-test-cc-")
  atexit.register(shutil.rmtree, _CACHE, True)
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE
  # Every program, however quick to compile: a tiny pipeline run compiles about 80
  # small ones (most well under 0.2 s), and together they are half its time.
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "-1"


# One folder for runs the whole session shares (tests/support/tiny.shared_dir): made here in
# the controlling process, inherited by pytest-xdist's workers through the environment.
if "JAXUNLEARN_TEST_SHARED" not in os.environ:
  _SHARED = tempfile.mkdtemp(prefix="jaxunlearn-test-shared-")
  atexit.register(shutil.rmtree, _SHARED, True)
  os.environ["JAXUNLEARN_TEST_SHARED"] = _SHARED

import sys

import pytest


@pytest.fixture(autouse=True)
def _restore_registries():
  """Plugins a test registers (or replaces) leave with it, so no other test sees them.

  A plugin module a test imported is forgotten too, so that a later test that
  names the same module registers its plugins again.
  """
  from jaxunlearn import registry
  saved = [(r, dict(r._plugins), dict(r._replaced)) for r in registry._ALL]
  yield
  for reg, plugins, replaced in saved:
    for name, plugin in reg._plugins.items():
      module = getattr(plugin, "__module__", "")
      if plugins.get(name) is not plugin and not module.startswith(("jaxunlearn", "tests")):
        sys.modules.pop(module, None)
    reg._plugins.clear()
    reg._plugins.update(plugins)
    reg._replaced.clear()
    reg._replaced.update(replaced)
