"""Pytest setup: run JAX on CPU so tests are deterministic and need no GPU."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
