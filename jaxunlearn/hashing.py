"""Stable short hashes of specs: what names a cached stage after what it depends on.

A plugin (a method, an evaluator, a statistic) may import this module; it
depends on nothing else of the library.
"""

from __future__ import annotations

import hashlib
import json

__all__ = ["spec_hash"]


def spec_hash(obj) -> str:
  """A short stable hash of a JSON-able spec."""
  return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]
