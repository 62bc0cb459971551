"""Evaluators, one file each, registered by name.

Public API: :func:`register`, :func:`get`, :func:`names`, the
:class:`Evaluator` base class and its read-only :class:`EvalInputs`
(:mod:`jaxunlearn.evaluators.base`). Importing this package registers the
built-in evaluators: ``accuracy`` (always), ``mia``, ``loss_attack``,
``distributions`` and ``backdoor``.
"""

from jaxunlearn.evaluators.base import (DataInfo, EvalInputs, Evaluator, ModelView,  # noqa: F401
                                        get, implementation, names, register, section_name,
                                        selected)
from jaxunlearn.evaluators import (accuracy, backdoor, distributions, loss_attack,  # noqa: F401,E402
                                   mia)

__all__ = ["register", "get", "names", "Evaluator", "EvalInputs", "ModelView", "DataInfo",
           "section_name", "selected"]
