"""Bad input refused before any work: one line naming the field or file and the fix, exit 2,
the work directory byte-identical, and no stage trained (training, saving and populations
raise inside these tests, so reaching them fails the test instead of timing it).

One test per class of failure (each parametrised over its examples):
silent wrong results, late failures, resource bounds, tracebacks, misleading messages.
"""

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxunlearn import checkpoint, cli, populations, scripts, train
from tests import tiny


@pytest.fixture
def no_work(monkeypatch):
  """Training, saving a stage and running a population all raise: nothing may start."""
  def refuse(*args, **kwargs):
    raise AssertionError("work started before the input was refused")
  monkeypatch.setattr(train, "fit", refuse)
  monkeypatch.setattr(checkpoint, "save", refuse)
  monkeypatch.setattr(populations, "run_population", refuse)


@pytest.fixture
def finished(tmp_path):
  """A copy of a finished tiny run: ``(npz, workdir)``."""
  npz, src, _ = tiny.finished_run()
  workdir = tmp_path / "work"
  shutil.copytree(src, workdir)
  local = tmp_path / "tiny.npz"
  shutil.copy(npz, local)
  return local, workdir


def _refused(command, npz, workdir, extra, capsys, words):
  """Runs the CLI; asserts exit 2, one line holding every word, and an unchanged work dir."""
  before = tiny.tree_snapshot(workdir)
  args = [command, f"--config={tiny.CONFIG}", f"--workdir={workdir}",
          f"--config.dataset=npz:{npz}", "--config.eval.evaluators=()", *extra]
  code = cli.main(["jaxunlearn", *args])
  err = capsys.readouterr().err.strip()
  assert code == 2, err
  lines = [x for x in err.splitlines() if not x.startswith("jaxunlearn: note:")]
  assert len(lines) == 1, err
  for word in words:
    assert word in lines[0], (word, lines[0])
  assert tiny.tree_snapshot(workdir) == before
  return lines[0]


def _audit_specs(*specs):
  return ["--config.audit.num_models=4", "--config.audit.statistics=('epsilon',)",
          f"--config.audit.methods={tuple(specs)!r}"]


# --- 1. silent wrong results ---------------------------------------------------------------


def _rewrite_npz(npz):
  x, y, xt, yt = tiny.make_arrays(seed=7)
  np.savez(npz, x_train=x, y_train=y, x_test=xt, y_test=yt)


def _npz_with(tmp, **arrays):
  path = tmp / "other.npz"
  base = dict(zip(("x_train", "y_train", "x_test", "y_test"), tiny.make_arrays()))
  base.update(arrays)
  np.savez(path, **base)
  return path


SILENT = {
    "data rewritten under the same path": (
        "run", lambda tmp, npz: (_rewrite_npz(npz), [])[1], ["other data", "restore"]),
    "index file without mode=indices": (
        "run", lambda tmp, npz: [f"--config.forget.index_file={tmp / 'idx.txt'}"],
        ["forget.index_file", "forget.mode=indices"]),
    "audit spec with a zero learning rate": (
        "audit", lambda tmp, npz: _audit_specs("finetune:learning_rate=0.0"),
        ["audit.methods entry", "learning_rate", "> 0"]),
    "audit spec with a negative learning rate": (
        "audit", lambda tmp, npz: _audit_specs("finetune:learning_rate=-0.1"),
        ["audit.methods entry", "learning_rate"]),
    "audit spec with zero epochs": (
        "audit", lambda tmp, npz: _audit_specs("finetune:epochs=0"),
        ["audit.methods entry", "epochs", "> 0"]),
    "audit spec overriding the method": (
        "audit", lambda tmp, npz: _audit_specs("mine=finetune:method=lightweight"),
        ["audit.methods entry", "label=lightweight"]),
    "a stray label beyond the classes": (
        "run", lambda tmp, npz: [f"--config.dataset=npz:{_npz_with(tmp, y_train=np.r_[tiny.make_arrays()[1][:-1], 9])}"],
        ["never occur in y_train", "num_classes"]),
    "a label outside the declared classes": (
        "run", lambda tmp, npz: ["--config.num_classes=3"],
        ["out of range", "num_classes"]),
    "0..255 float images": (
        "run", lambda tmp, npz: [f"--config.dataset=npz:{_npz_with(tmp, x_train=255.0 * tiny.make_arrays()[0])}"],
        ["outside [0, 1]", "input_scale"]),
}


@pytest.mark.parametrize("case", list(SILENT), ids=list(SILENT))
def test_silent_wrong_results_are_refused(case, finished, tmp_path, capsys, no_work):
  npz, workdir = finished
  (tmp_path / "idx.txt").write_text("1 2 3\n")
  command, setup, words = SILENT[case]
  extra = setup(tmp_path, npz)
  _refused(command, npz, workdir, extra, capsys, words)


def test_an_empty_workdir_is_refused(tmp_path, capsys, no_work, monkeypatch):
  npz = tiny.write_npz(tmp_path / "tiny.npz")
  monkeypatch.chdir(tmp_path)
  code = cli.main(["jaxunlearn", "run", f"--config={tiny.CONFIG}", "--workdir=",
                   f"--config.dataset=npz:{npz}"])
  err = capsys.readouterr().err.strip()
  assert code == 2 and "--workdir is empty" in err and len(err.splitlines()) == 1
  assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.npz"]


def test_an_old_workdir_records_its_data_hash_once(finished, capsys):
  import json
  npz, workdir = finished
  run_json = workdir / "run.json"
  saved = json.loads(run_json.read_text())
  saved["original"].pop("data_hash")
  run_json.write_text(json.dumps(saved))
  args = tiny.cli_args(npz, workdir, "--config.eval.evaluators=()")
  assert cli.main(["jaxunlearn", *args]) == 0
  notes = [x for x in capsys.readouterr().err.splitlines() if "data hash" in x]
  assert len(notes) == 1 and "recorded" in notes[0]
  assert "data_hash" in json.loads(run_json.read_text())["original"]


# --- 2. late failures: everything that can be checked without training is ------------------

LATE = {
    "unknown stop": (_audit_specs("finetune:stop=sometimes"), ["stop", "one of"]),
    "unknown kl_reduction": (_audit_specs("lightweight:kl_reduction=max"),
                             ["kl_reduction", "one of"]),
    "unknown optimizer": (_audit_specs("finetune:optimizer=lion"), ["optimizer", "one of"]),
    "unknown schedule": (_audit_specs("finetune:schedule=wavy"), ["schedule", "one of"]),
    "tol without a reference": (_audit_specs("finetune:tol=0.1"), ["tol", "reference"]),
    "nan learning rate": (_audit_specs("finetune:learning_rate=nan"), ["learning_rate", "finite"]),
    "zero forget batch": (_audit_specs("finetune:forget_batch_size=0"),
                          ["forget_batch_size", "> 0"]),
    "one U-LiRA original": (["--config.audit.num_models=4", "--config.audit.methods=('finetune',)",
                             "--config.audit.ulira.num_originals=1"],
                            ["audit.ulira.num_originals", "raise"]),
    "two U-LiRA originals": (["--config.audit.num_models=4",
                              "--config.audit.methods=('finetune',)",
                              "--config.audit.ulira.num_originals=2",
                              "--config.audit.ulira.forget_sets_per_original=1"],
                             ["audit.ulira.num_originals"]),
    "negative plot_examples": (["--config.audit.epsilon.plot_examples=-1"],
                               ["audit.epsilon.plot_examples", ">= 1"]),
}


@pytest.mark.parametrize("case", list(LATE), ids=list(LATE))
def test_late_failures_are_caught_before_any_work(case, finished, capsys, no_work):
  npz, workdir = finished
  (workdir / "audit.json").write_text("{}")     # an earlier audit must not be retired
  extra, words = LATE[case]
  _refused("audit", npz, workdir, extra, capsys, words)


def test_a_plugin_that_changes_parameter_shapes_is_refused_before_training(
    finished, tmp_path, capsys, no_work, monkeypatch):
  (tmp_path / "shape_plugin.py").write_text(
      "import jax\n"
      "from jaxunlearn import methods\n"
      "@methods.register('widen')\n"
      "class Widen(methods.Method):\n"
      "  inputs = ('x_remain', 'y_remain')\n"
      "  def make(self, env):\n"
      "    rule = methods.get('finetune')().make(env)\n"
      "    return rule._replace(finish=lambda s: jax.tree.map(lambda p: p[None], s.params))\n")
  monkeypatch.syspath_prepend(str(tmp_path))
  npz, workdir = finished
  _refused("run", npz, workdir, ["--config.plugins=('shape_plugin',)",
                                 "--config.unlearn.method=widen"], capsys,
           ["widen", "structure or shape"])


# --- 3. resource bounds -------------------------------------------------------------------------


def test_a_population_too_large_for_memory_is_refused(finished, capsys, no_work):
  npz, workdir = finished
  line = _refused("audit", npz, workdir, ["--config.audit.num_models=1000000000",
                                          "--config.audit.methods=('finetune',)"],
                  capsys, ["GiB", "audit.num_models", "limit", "host memory"])
  assert "1000000000 models" in line


def test_chunks_are_evened_out_instead_of_padding_a_whole_chunk():
  assert populations.balanced_chunk(65, 64) == 33
  assert populations.balanced_chunk(64, 64) == 64 and populations.balanced_chunk(10, 4) == 4
  assert populations.balanced_chunk(3, 16) == 3


# --- 4. tracebacks: one line instead ---------------------------------------------------------


def test_a_non_number_hyperparameter_in_an_audit_spec(finished, capsys, no_work):
  npz, workdir = finished
  _refused("audit", npz, workdir, _audit_specs("lightweight:lam=abc"), capsys,
           ["audit.methods entry", "lam", "number"])


SCRIPT = {
    "unknown method": (["--methods", "nope"], ["nope", "jaxunlearn methods"]),
    "seeds not integers": (["--seeds", "a,b"], ["--seeds", "integers"]),
    "empty seeds": (["--seeds", ","], ["--seeds", "empty"]),
    "empty methods": (["--methods", ","], ["--methods", "empty"]),
    "out is a file": (["--out", "FILE"], ["--out", "is a file"]),
    "bad set": (["--set", "train.nope=3"], ["train.nope", "unknown config field"]),
    "set without a value": (["--set", "train.epochs"], ["--set", "FIELD=VALUE"]),
    "bad control factors": (["--control-factors", "abc"], ["--control-factors", "numbers"]),
}


@pytest.mark.parametrize("case", list(SCRIPT), ids=list(SCRIPT))
def test_compare_methods_refuses_bad_input_in_one_line(case, tmp_path, capsys, monkeypatch,
                                                       no_work):
  from experiments import compare_methods
  extra, words = SCRIPT[case]
  (tmp_path / "FILE").write_text("x")
  extra = [str(tmp_path / "FILE") if a == "FILE" else a for a in extra]
  argv = ["compare_methods.py", "--config", str(tiny.CONFIG), "--methods", "finetune",
          "--out", str(tmp_path / "out")]
  for flag_value in zip(extra[::2], extra[1::2]):
    if flag_value[0] in argv:
      argv[argv.index(flag_value[0]) + 1] = flag_value[1]
    else:
      argv += list(flag_value)
  monkeypatch.setattr(sys, "argv", argv)
  with pytest.raises(SystemExit) as e:
    scripts.run(lambda: compare_methods.main(argv[1:]))
  assert e.value.code == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1, err
  for word in words:
    assert word in err, (word, err)
  assert not (tmp_path / "out" / "work").exists()


def test_every_script_ends_bad_input_in_one_line():
  """Each script under benchmarks/ and experiments/ runs its main through scripts.run."""
  root = Path(__file__).resolve().parents[1]
  mains = [p for d in ("benchmarks", "experiments") for p in sorted((root / d).glob("*.py"))
           if 'if __name__ == "__main__":' in p.read_text()]
  assert len(mains) >= 10
  missing = [p.name for p in mains if "scripts.run(" not in p.read_text().split(
      'if __name__ == "__main__":')[-1]]
  assert not missing, missing


def test_scripts_run_passes_on_an_exit_status_and_refuses_in_one_line(capsys, monkeypatch):
  from benchmarks import determinism, scaling
  monkeypatch.setattr(sys, "argv", ["x.py"])
  with pytest.raises(SystemExit) as e:
    scripts.run(lambda: 3)
  assert e.value.code == 3
  scripts.run(lambda: 0)
  scripts.run(lambda: {"a": 1})
  for main, argv, word in [(determinism.main, ["--models", "foo"], "foo"),
                           (scaling.main, ["--epochs", "0"], "--epochs"),
                           (scaling.main, ["--devices", "0"], "--devices")]:
    with pytest.raises(SystemExit) as e:
      scripts.run(lambda main=main, argv=argv: main(argv))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and word in err, err


def test_a_bug_in_a_plugin_still_shows_its_traceback(finished, tmp_path, monkeypatch):
  (tmp_path / "buggy_plugin.py").write_text(
      "from jaxunlearn import methods\n"
      "@methods.register('buggy')\n"
      "class Buggy(methods.Method):\n"
      "  inputs = ('x_remain', 'y_remain')\n"
      "  def loss(self, params, apply_fn, batch, hp, extra):\n"
      "    raise RuntimeError('a bug in the plugin')\n")
  monkeypatch.syspath_prepend(str(tmp_path))
  npz, workdir = finished
  with pytest.raises(RuntimeError, match="a bug in the plugin"):
    cli.main(["jaxunlearn", *tiny.cli_args(npz, workdir, "--config.plugins=('buggy_plugin',)",
                                            "--config.unlearn.method=buggy")])


# --- 5. messages that mislead no more ------------------------------------------------------------

MISLEADING = {
    "unknown audit method": ("audit", lambda tmp: _audit_specs("nope"),
                             ["audit.methods entry 'nope'", "unknown method"]),
    "a directory as the index file": (
        "run", lambda tmp: ["--config.forget.mode=indices", f"--config.forget.index_file={tmp}"],
        ["is a directory"]),
    "a garbage npz": ("run", lambda tmp: [f"--config.dataset=npz:{_garbage(tmp)}"],
                      ["not an .npz archive", "numpy.savez"]),
    "holdout keeps nearly everything": ("run", lambda tmp: ["--config.holdout.size=0.99"],
                                        ["holdout.size", "lower holdout.size"]),
    "a config file without get_config": ("run", lambda tmp: [f"--config={_no_get_config(tmp)}"],
                                         ["get_config"]),
    "a fractional index in a text file": (
        "run", lambda tmp: ["--config.forget.mode=indices",
                            f"--config.forget.index_file={_text(tmp, '1.5 2')}"],
        ["whole numbers"]),
    "a fractional index in a .npy file": (
        "run", lambda tmp: ["--config.forget.mode=indices",
                            f"--config.forget.index_file={_npy(tmp, [1.5, 2.0])}"],
        ["non-integer"]),
}


def _garbage(tmp):
  path = tmp / "garbage.npz"
  path.write_bytes(b"this is not a zip archive" * 10)
  return path


def _no_get_config(tmp):
  path = tmp / "no_get_config.py"
  path.write_text("X = 1\n")
  return path


def _text(tmp, content):
  path = tmp / "idx.txt"
  path.write_text(content)
  return path


def _npy(tmp, values):
  path = tmp / "idx.npy"
  np.save(path, np.asarray(values))
  return path


@pytest.mark.parametrize("case", list(MISLEADING), ids=list(MISLEADING))
def test_messages_name_what_is_wrong(case, finished, tmp_path, capsys, no_work):
  npz, workdir = finished
  command, setup, words = MISLEADING[case]
  extra = setup(tmp_path)
  configs = [a for a in extra if a.startswith("--config=")]
  if configs:   # another config file replaces the tiny one
    before = tiny.tree_snapshot(workdir)
    code = cli.main(["jaxunlearn", command, *configs, f"--workdir={workdir}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert all(w in err for w in words), err
    assert tiny.tree_snapshot(workdir) == before
    return
  _refused(command, npz, workdir, extra, capsys, words)


def test_whole_numbers_are_one_rule_for_text_and_npy(tmp_path):
  from jaxunlearn import splits
  text, npy = _text(tmp_path, "1.0 3"), _npy(tmp_path, [1.0, 3.0])
  np.testing.assert_array_equal(splits.read_index_file(str(text), 10), [1, 3])
  np.testing.assert_array_equal(splits.read_index_file(str(npy), 10), [1, 3])


# === IDX files (idx:DIR) and fashion_mnist ===================================================
# One block, kept together: bad, truncated or ambiguous IDX sets are refused in one line
# naming the file, by the reader and by the command line (exit 2, nothing written).

import gzip  # noqa: E402

from jaxunlearn import data  # noqa: E402
from jaxunlearn.datasets import fashion_mnist as fashion_mnist_lib  # noqa: E402
from jaxunlearn.errors import DataError  # noqa: E402
from tests import idx_files  # noqa: E402


def _bad_magic(tmp):
  files = idx_files.write_set(tmp)
  idx_files.write(files["x_train"], idx_files.make_arrays()["x_train"], magic=0x00000903)
  return files["x_train"].name


def _truncated_raw(tmp):
  files = idx_files.write_set(tmp, gz=False)
  raw = files["x_test"].read_bytes()
  files["x_test"].write_bytes(raw[:-7])
  return files["x_test"].name


def _truncated_gz(tmp):
  files = idx_files.write_set(tmp)
  raw = files["y_train"].read_bytes()
  files["y_train"].write_bytes(raw[:len(raw) // 2])
  return files["y_train"].name


def _truncated_header(tmp):
  files = idx_files.write_set(tmp)
  files["y_test"].write_bytes(gzip.compress(b"\x00\x00\x08"))
  return files["y_test"].name


def _bytes_after_the_items(tmp):
  files = idx_files.write_set(tmp, gz=False)
  files["y_train"].write_bytes(files["y_train"].read_bytes() + b"\x00")
  return files["y_train"].name


def _label_out_of_range(tmp):
  arrays = idx_files.make_arrays()
  arrays["y_test"][3] = 10   # the training labels make 10 classes
  idx_files.write_set(tmp, arrays)
  return "t10k-labels-idx1-ubyte.gz"


def _two_files_for_one_role(tmp):
  idx_files.write_set(tmp)
  idx_files.write(tmp / "train-labels-idx1-ubyte", idx_files.make_arrays()["y_train"])
  return "train-labels-idx1-ubyte.gz"


def _two_emnist_sets(tmp):
  idx_files.write_set(tmp, prefix="emnist-balanced-")
  idx_files.write_set(tmp, prefix="emnist-digits-")
  return "emnist-digits-train-images-idx3-ubyte.gz"


def _a_role_missing(tmp):
  idx_files.write_set(tmp)["x_test"].unlink()
  return "t10k-images-idx3-ubyte"


def _counts_differ(tmp):
  arrays = idx_files.make_arrays()
  arrays["y_train"] = arrays["y_train"][:-1]
  idx_files.write_set(tmp, arrays)
  return "train-labels-idx1-ubyte.gz"


def _test_images_of_another_size(tmp):
  arrays = idx_files.make_arrays()
  arrays["x_test"] = arrays["x_test"][:, :4]
  idx_files.write_set(tmp, arrays)
  return "t10k-images-idx3-ubyte.gz"


def _a_class_missing(tmp):
  arrays = idx_files.make_arrays()
  arrays["y_train"][arrays["y_train"] == 4] = 5
  idx_files.write_set(tmp, arrays)
  return "train-labels-idx1-ubyte.gz"


BAD_IDX = {
    "a bad magic number": (_bad_magic, ["magic number 0x00000903", "0x00000803"]),
    "a truncated raw file": (_truncated_raw, ["truncated", "header declares 20 images"]),
    "a truncated gzip file": (_truncated_gz, ["truncated", "gzip"]),
    "a truncated header": (_truncated_header, ["truncated", "header"]),
    "bytes after the items": (_bytes_after_the_items, ["1 byte(s) after the 40 labels"]),
    "a label out of range": (_label_out_of_range, ["label 10", "out of range"]),
    "two files for one role": (_two_files_for_one_role, ["2 train labels files",
                                                         "train-labels-idx1-ubyte,"]),
    "two EMNIST sets in one folder": (_two_emnist_sets, ["2 train images files",
                                                         "one set per folder"]),
    "a role without a file": (_a_role_missing, ["no test images file"]),
    "images and labels of different counts": (_counts_differ, ["39 labels", "40 images"]),
    "test images of another size": (_test_images_of_another_size, ["4x5", "6x5"]),
    "a class no training label has": (_a_class_missing, ["[4]", "--config.num_classes"]),
}


@pytest.mark.parametrize("case", list(BAD_IDX), ids=list(BAD_IDX))
def test_a_bad_idx_set_is_refused_naming_the_file(case, tmp_path):
  setup, words = BAD_IDX[case]
  named = setup(tmp_path)
  with pytest.raises(DataError) as info:
    data.load(f"idx:{tmp_path}")
  message = str(info.value)
  assert "\n" not in message
  assert named in message, message
  for word in words:
    assert word in message, (word, message)


def test_a_label_beyond_the_declared_classes_is_refused_naming_the_file(tmp_path):
  idx_files.write_set(tmp_path)   # labels 0..9
  with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz holds label [89]") as info:
    data.load(f"idx:{tmp_path}", num_classes=8)
  assert "\n" not in str(info.value) and "num_classes=8" in str(info.value)


@pytest.mark.parametrize("name, words", [
    ("idx:", ["idx: needs a folder"]),
    ("idx", ["needs an argument", "idx:/usr/share/datasets/fashion-mnist"]),
    ("idx:/nonexistent/idx", ["/nonexistent/idx does not exist"]),
])
def test_an_idx_name_without_a_folder_is_refused(name, words):
  with pytest.raises(DataError) as info:
    data.load(name)
  assert "\n" not in str(info.value)
  for word in words:
    assert word in str(info.value), str(info.value)


def test_fashion_mnist_without_either_source_names_both_ways(tmp_path, monkeypatch):
  monkeypatch.setattr(fashion_mnist_lib, "DEBIAN_DIR", tmp_path / "absent")
  with pytest.raises(DataError) as info:
    data.load("fashion_mnist", data_dir=str(tmp_path / "tfds"))
  message = str(info.value)
  assert "\n" not in message
  for word in ("apt-get install dataset-fashion-mnist",
               "tfds build fashion_mnist --file_format=array_record", str(tmp_path / "absent")):
    assert word in message, (word, message)


def test_a_bad_debian_copy_is_refused_not_skipped(tmp_path, monkeypatch):
  # The package's folder is there but a file is damaged: say so, do not fall through.
  named = _truncated_gz(tmp_path / "debian")
  monkeypatch.setattr(fashion_mnist_lib, "DEBIAN_DIR", tmp_path / "debian")
  with pytest.raises(DataError, match="truncated") as info:
    data.load("fashion_mnist", data_dir=str(tmp_path / "tfds"))
  assert named in str(info.value)


@pytest.mark.parametrize("dataset, words", [
    ("idx:/nonexistent", ["idx:/nonexistent does not exist"]),
    ("bad-set", ["truncated", "train-labels-idx1-ubyte.gz"]),
])
def test_the_cli_refuses_bad_idx_data_in_one_line(dataset, words, tmp_path, capsys, no_work):
  if dataset == "bad-set":
    _truncated_gz(tmp_path / "set")
    dataset = f"idx:{tmp_path / 'set'}"
  config = Path(tiny.REPO_ROOT) / "configs" / "quick.py"
  code = cli.main(["jaxunlearn", "run", f"--config={config}", f"--workdir={tmp_path / 'w'}",
                   f"--config.dataset={dataset}"])
  err = capsys.readouterr().err.strip()
  assert code == 2, err
  assert len(err.splitlines()) == 1, err
  for word in words:
    assert word in err, (word, err)
  assert not (tmp_path / "w").exists()
