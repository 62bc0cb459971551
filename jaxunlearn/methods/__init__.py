"""Unlearning methods, one file each, registered by name.

Public API: :func:`register`, :func:`get`, :func:`names`, the :class:`Method`
base class and the :data:`INPUTS` vocabulary (:mod:`jaxunlearn.methods.base`).
Importing this package registers the built-in methods.
"""

from jaxunlearn.methods.base import (INPUTS, Batch, Inputs, Method, MethodEnv,  # noqa: F401
                                     UpdateRule, UnlearnState, cross_entropy, get,
                                     kl_divergence, kl_per_example, names, register,
                                     resolve_hparams, resolve_method)
from jaxunlearn.methods import (bad_teacher, finetune, gradient_ascent, l1_sparse,  # noqa: F401,E402
                                lightweight, neggrad_plus, random_label, salun, scrub,
                                scrub_r)  # (built-ins register)
