"""Helpers the tests share: the tiny end-to-end setup, toy problems, and scripts tests start.

Nothing here is collected as a test. ``tiny`` (with ``tiny_config.py``) is the
tiny dataset, config and command line; ``scale_problem`` is the toy problem the
sharding checks use; ``sharding_checks``, ``multiprocess_worker`` and
``population_checks`` are scripts the tests run in subprocesses (with forced
CPU device counts, which must be set before JAX starts).
"""
