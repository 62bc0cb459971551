"""Unlearning methods, one file each, registered by name.

Public API: :func:`register`, :func:`get`, :func:`names`, :func:`as_method`, the
:class:`Method` base class, its :class:`UpdateRule` (:func:`with_defaults`) and the
:data:`INPUTS` vocabulary (:mod:`jaxunlearn.methods.base`).
Importing this package registers the built-in methods.
"""

from jaxunlearn.methods.base import (INPUTS, TEACHER_INPUTS, Batch, Inputs,  # noqa: F401
                                     Method, MethodEnv, RunShape, UpdateRule, UnlearnState,
                                     as_method,
                                     cross_entropy, get, implementation, kl_divergence,
                                     kl_per_example, names,
                                     register, resolve_hparams, resolve_method, with_defaults)
from jaxunlearn.methods import (bad_teacher, ct, finetune, gradient_ascent,  # noqa: F401,E402
                                importance_retrain, l1_sparse, lightweight, matching, msg,
                                neggrad_plus, random_label, random_reinit, reset_distill,
                                retrain_short, salun, scrub, scrub_r, ssd)  # (built-ins register)

__all__ = ["register", "get", "names", "as_method", "Method", "MethodEnv", "UpdateRule",
           "UnlearnState", "with_defaults", "Inputs", "Batch", "RunShape", "INPUTS",
           "TEACHER_INPUTS",
           "resolve_method", "resolve_hparams", "cross_entropy", "kl_divergence",
           "kl_per_example"]
