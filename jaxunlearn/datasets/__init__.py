"""Datasets with a file of their own, registered by name (:func:`jaxunlearn.data.register`).

Importing the ``jaxunlearn`` package imports this one, which registers
``idx:DIR`` (:mod:`~jaxunlearn.datasets.idx`) and ``fashion_mnist``
(:mod:`~jaxunlearn.datasets.fashion_mnist`).

Nothing here is imported by name: :func:`jaxunlearn.data.load` finds each dataset by the
name it registered, so this package declares no public names.
"""

from jaxunlearn.datasets import fashion_mnist, idx  # noqa: F401

__all__ = []
