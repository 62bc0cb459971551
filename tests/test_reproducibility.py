"""One tiny unlearning run, bit for bit against a stored result.

The tiny config's whole pipeline (data, splits, original, reference,
unlearning) runs on CPU and its unlearned parameters are compared with
``tests/data/tiny_unlearned.npz``. A change that moves any figure (a key, a
batch order, an initialiser, a loss) fails here. To record a new reference on
purpose: ``python tests/test_reproducibility.py`` (and say why in the commit).

Bit-for-bit holds for the JAX version that wrote the file; under another
version XLA may fuse differently, so the comparison falls back to 1e-5.
"""

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support import tiny  # noqa: E402

STORED = Path(__file__).resolve().parent / "data" / "tiny_unlearned.npz"


def unlearned_arrays() -> tuple[dict, dict]:
  """``({leaf path: array}, figures)`` of the tiny run's unlearned model."""
  import jax
  from jaxunlearn import checkpoint, request
  npz, workdir, results = tiny.finished_run()
  stage = results["stages"]["unlearned"]
  with request.open_request(tiny.config(npz), workdir) as req:
    variables, _ = checkpoint.restore(req.cache.path(stage), req.abstract_variables())
  leaves = {jax.tree_util.keystr(path): np.asarray(leaf)
            for path, leaf in jax.tree_util.tree_leaves_with_path(variables["params"])}
  return leaves, tiny.figures(results)["models"]


def test_tiny_unlearned_parameters_match_the_stored_run():
  import jax
  leaves, figures = unlearned_arrays()
  with np.load(STORED) as z:
    stored = {k: z[k] for k in z.files}
  meta = json.loads(str(stored.pop("__meta__")))
  assert set(stored) == set(leaves)
  if meta["jax"] == jax.__version__:
    for name, want in stored.items():
      np.testing.assert_array_equal(leaves[name], want, err_msg=name)
    assert json.loads(json.dumps(figures)) == meta["models"]
  else:
    for name, want in stored.items():
      np.testing.assert_allclose(leaves[name], want, rtol=0, atol=1e-5, err_msg=name)


def main():
  import jax
  leaves, figures = unlearned_arrays()
  STORED.parent.mkdir(exist_ok=True)
  meta = json.dumps({"jax": jax.__version__, "models": figures})
  np.savez(STORED, __meta__=np.asarray(meta), **leaves)
  print(f"wrote {STORED} (jax {jax.__version__})")


if __name__ == "__main__":
  main()
