"""Per-example unlearning audits (AUDITS.md): pure statistics on phi matrices.

* :mod:`~jaxunlearn.audits.phi`: the logit-scaled confidence phi.
* :mod:`~jaxunlearn.audits.epsilon`: the NeurIPS-2023 challenge's per-example
  epsilon and forgetting quality.
* :mod:`~jaxunlearn.audits.ulira`: U-LiRA, the per-example likelihood-ratio
  unlearning membership attack.
"""

from jaxunlearn.audits import epsilon, phi, ulira
