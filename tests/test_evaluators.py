"""The evaluators inside the pipeline: registry, config checks, a tiny end-to-end run."""

import json

import numpy as np
import pytest

from jaxunlearn import evaluators, pipeline, plugins
from jaxunlearn.errors import ConfigError


@pytest.fixture(scope="module")
def npz(tmp_path_factory):
  """4 classes of 8x8 images: a bright quadrant per class, plus noise."""
  rng = np.random.default_rng(0)

  def make(n):
    y = rng.integers(0, 4, n)
    x = rng.random((n, 8, 8)) * 0.3
    for i, c in enumerate(y):
      r, q = divmod(int(c), 2)
      x[i, 4 * r:4 * r + 4, 4 * q:4 * q + 4] += 0.6
    return x.astype(np.float32), y.astype(np.int32)

  x_train, y_train = make(160)
  x_test, y_test = make(80)
  path = tmp_path_factory.mktemp("data") / "tiny.npz"
  np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
  return f"npz:{path}"


def _cfg(npz):
  c = plugins.default_config()
  c.setting = "tiny"
  c.dataset = npz
  c.model = "mlp"
  c.model_kwargs.hidden = (16,)
  c.train.epochs = 3
  c.train.batch_size = 16
  c.forget.size = 8
  c.reference.size = 40
  c.reference.epochs = 2
  c.unlearn.epochs = 1
  c.unlearn.forget_batch_size = 4
  c.unlearn.remain_batch_size = 16
  c.mia.num_shadows = 2
  c.mia.shadow_epochs = 2
  c.mia.pool_size = 40
  c.loss_attack.folds = 2
  c.backdoor.enabled = True
  c.backdoor.patch_size = 2
  c.backdoor.target_class = 1
  c.report.progress = False
  return c


def test_registry_and_names():
  for name in ("accuracy", "mia", "loss_attack", "distributions", "backdoor"):
    assert issubclass(evaluators.get(name), evaluators.Evaluator)
    assert name in evaluators.names()
  with pytest.raises(ConfigError, match="unknown evaluator 'lira'"):
    evaluators.get("lira")
  c = plugins.default_config()
  # accuracy always runs first; backdoor joins whenever a backdoor is planted.
  assert evaluators.selected(c) == ["accuracy", "mia", "loss_attack", "distributions"]
  c.backdoor.enabled = True
  assert evaluators.selected(c) == ["accuracy", "mia", "loss_attack", "distributions",
                                    "backdoor"]
  assert evaluators.section_name("accuracy") == "models"


@pytest.mark.parametrize("field, value, match", [
    ("eval.evaluators", ("mia", "lira"), "unknown evaluator"),
    ("mia.features", ("sorted", "raw"), "mia.features"),
    ("mia.pool_size", 79, "held-out"),
    ("mia.num_shadows", 0, "mia.num_shadows"),
    ("backdoor.patch_size", 8, "does not fit"),
    ("backdoor.target_class", 4, "target_class"),
    ("backdoor.position", "middle", "backdoor.position"),
])
def test_bad_settings_fail_before_any_write(npz, tmp_path, field, value, match):
  c = _cfg(npz)
  group, name = field.split(".")
  c[group][name] = value
  with pytest.raises(ConfigError, match=match):
    pipeline.run(c, tmp_path / "w")
  assert not (tmp_path / "w").exists()


def test_backdoor_evaluator_needs_a_backdoor(npz, tmp_path):
  c = _cfg(npz)
  c.backdoor.enabled = False
  c.eval.evaluators = ("backdoor",)
  with pytest.raises(ConfigError, match="backdoor.enabled"):
    pipeline.run(c, tmp_path / "w")
  assert not (tmp_path / "w").exists()


@pytest.mark.slow
def test_pipeline_runs_every_evaluator_and_caches_shadows(npz, tmp_path):
  c = _cfg(npz)
  r = pipeline.run(c, tmp_path)
  models = ("original", "retrain", "reference", "unlearned")
  for m in models:
    row = r["mia"][m]
    for k in ("balanced_acc", "auc", "forget_member_rate", "logit_conf.balanced_acc",
              "logit_conf.auc"):
      assert 0.0 <= row[k] <= 1.0, (m, k)
    for k in ("balanced_acc", "auc"):
      assert 0.0 <= r["loss_attack"][m][k] <= 1.0, (m, k)
    assert 0.0 <= r["backdoor"][m]["attack_success"] <= 1.0
    assert r["backdoor"][m]["clean_acc"] == pytest.approx(r["models"][m]["acc_test"])
    assert r["distributions"][m]["max_prob_forget"] > 0
  for m in ("original", "reference", "unlearned"):
    assert r["distributions"][m]["kl_forget"] >= 0
    assert 0 <= r["distributions"][m]["js_test"] <= np.log(2)
  assert r["mia"]["n_members"] == r["mia"]["n_nonmembers"] == 8
  assert r["mia"]["num_shadows"] == 2 and not r["mia"]["shadows_reused"]
  assert "test split" in r["mia"]["shadow_pool"]
  assert (tmp_path / "distributions.png").read_bytes()[:4] == b"\x89PNG"
  md = (tmp_path / "results.md").read_text()
  for title in ("## Accuracy and loss", "## Membership inference on D_f",
                "## Backdoor planted in D_f", "## Output distributions", "## Loss attack on D_f"):
    assert title in md
  assert r["evaluators"] == ["accuracy", "mia", "loss_attack", "distributions", "backdoor"]
  saved = json.loads((tmp_path / "results.json").read_text())
  assert saved["mia"]["original"] == r["mia"]["original"]
  shadow_dirs = list((tmp_path / "checkpoints").glob("shadows-*"))
  assert [d.name for d in shadow_dirs] == [r["mia"]["shadow_stage"]]

  again = pipeline.run(c, tmp_path)
  assert again["mia"]["shadows_reused"]
  for m in models:
    assert again["mia"][m] == pytest.approx(r["mia"][m])
