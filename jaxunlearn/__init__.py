"""jaxunlearn: machine unlearning for JAX/Flax models.

Stages are modules with small pure interfaces: :mod:`jaxunlearn.data`,
:mod:`jaxunlearn.splits`, :mod:`jaxunlearn.models`, :mod:`jaxunlearn.train`,
:mod:`jaxunlearn.unlearn` (a whole unlearning run as one pure function),
:mod:`jaxunlearn.checkpoint`. Unlearning methods and evaluators are plugins,
one file each, in :mod:`jaxunlearn.methods` and :mod:`jaxunlearn.evaluators`;
:mod:`jaxunlearn.pipeline` strings the stages together and
:mod:`jaxunlearn.cli` is the command line.
"""

__version__ = "0.1.0"

# Built-in datasets with a file of their own (idx:DIR, fashion_mnist) register with
# jaxunlearn.data here, so that data.load knows them and the registry imports no plugin.
from jaxunlearn import datasets  # noqa: E402,F401
