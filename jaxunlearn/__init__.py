"""jaxunlearn: lightweight machine unlearning for JAX/Flax models.

Stages are modules with small pure interfaces: :mod:`jaxunlearn.data`,
:mod:`jaxunlearn.splits`, :mod:`jaxunlearn.models`, :mod:`jaxunlearn.train`,
:mod:`jaxunlearn.unlearn`, :mod:`jaxunlearn.evaluate`,
:mod:`jaxunlearn.checkpoint`; :mod:`jaxunlearn.pipeline` strings them
together and :mod:`jaxunlearn.cli` is the command line.
"""

__version__ = "0.1.0"
