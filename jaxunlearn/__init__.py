"""jaxunlearn: machine unlearning for JAX/Flax models.

The building blocks are modules with small pure interfaces: :mod:`jaxunlearn.data`
(datasets by name; :mod:`jaxunlearn.datasets` holds the built-ins with a file of their own),
:mod:`jaxunlearn.splits`, :mod:`jaxunlearn.models`, :mod:`jaxunlearn.train`,
:mod:`jaxunlearn.unlearn` (a whole unlearning run as one pure function, with
:mod:`jaxunlearn.stop`'s stop rules), :mod:`jaxunlearn.plan` (one method at one setting) and
:mod:`jaxunlearn.checkpoint`.

Plugins register by name, one file each: unlearning methods in :mod:`jaxunlearn.methods`,
evaluators in :mod:`jaxunlearn.evaluators`, audit statistics (``epsilon``, ``ulira``,
``klom``) in :mod:`jaxunlearn.audits`, data transforms in :mod:`jaxunlearn.transforms`.
A plugin imports no orchestration; :mod:`jaxunlearn.hashing` is there for it.

Every entry point opens one frozen request (:mod:`jaxunlearn.request`). The model stages
(original, retrain, reference, unlearned) live in :mod:`jaxunlearn.stages`, the result
records in :mod:`jaxunlearn.results`. :mod:`jaxunlearn.pipeline` strings the stages together
for ``jaxunlearn run``; :mod:`jaxunlearn.auditor` serves populations of models
(:mod:`jaxunlearn.populations`) to the audit statistics for ``jaxunlearn audit``;
:mod:`jaxunlearn.tuning` picks hyperparameters. :mod:`jaxunlearn.cli` is the command line.
Moved names keep an alias that prints one deprecation line (:mod:`jaxunlearn.deprecation`).
Each module's ``__all__`` is its public API, listed in README's "Public API" section.
"""

__version__ = "0.1.0"

# Built-in datasets with a file of their own (idx:DIR, fashion_mnist) register with
# jaxunlearn.data here, so that data.load knows them and the registry imports no plugin.
from jaxunlearn import datasets  # noqa: E402,F401
