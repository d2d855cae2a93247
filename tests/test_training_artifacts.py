"""What `digits-train` writes: deterministic bytes, a complete manifest, figures, verify, errors."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from digits_onnx.inference import Model, contract
from digits_onnx.training import train
from digits_onnx.training.cli import main
from digits_onnx.training.manifest import GOLDEN_PROBA_STEP, sha256_hex
from digits_onnx.training.report import FIGURES

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "artifacts"
SET = (contract.MODEL_FILENAME, contract.MANIFEST_FILENAME, contract.REFERENCE_FILENAME)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_training_twice_gives_identical_bytes(trained_default, tmp_path):
    """model.onnx, model.json, reference.npz and every figure are byte-for-byte reproducible."""
    first = trained_default.paths[0].parent
    train(tmp_path / "again", recipe="default")
    assert _files(first) == _files(tmp_path / "again")


def _committed(folder: Path) -> dict[str, bytes]:
    """The committed set of the full profile: artifacts/ without the package's own files and
    without the probabilities profile's subfolder."""
    return {name: data for name, data in _files(folder).items()
            if name != "__init__.py" and not name.startswith(("__pycache__/", "probabilities/"))}


def test_retraining_reproduces_the_committed_artifacts(trained_default):
    """What digits-train writes today is, byte for byte, what is committed: retraining leaves
    git status clean."""
    assert _files(trained_default.paths[0].parent) == _committed(ARTIFACTS)


def _openblas_with_kernel_choice() -> bool:
    blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    return "DYNAMIC_ARCH" in str(blas.get("openblas configuration", ""))


@pytest.mark.slow
@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                    reason="OpenBLAS's Prescott kernels are x86-64 kernels")
def test_another_cpus_blas_kernels_reproduce_the_committed_bytes(tmp_path):
    """OPENBLAS_CORETYPE picks another CPU's kernels (Prescott: plain SSE3), whose sums round
    differently in the last bits; the committed files must not change."""
    if not _openblas_with_kernel_choice():
        pytest.skip("numpy's BLAS is not an OpenBLAS built with DYNAMIC_ARCH")
    env = {**os.environ, "OPENBLAS_CORETYPE": "Prescott"}
    proc = subprocess.run(
        [sys.executable, "-m", "digits_onnx.training", "--no-report", "--out", str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    for name in SET:
        assert (tmp_path / name).read_bytes() == (ARTIFACTS / name).read_bytes(), name


def test_manifest_describes_the_model(trained_recipe):
    folder = trained_recipe.paths[0].parent
    manifest = json.loads((folder / contract.MANIFEST_FILENAME).read_text())
    model_bytes = (folder / contract.MODEL_FILENAME).read_bytes()
    assert manifest["schema_version"] == contract.MANIFEST_SCHEMA_VERSION
    assert manifest["model"] == {"file": "model.onnx", "sha256": sha256_hex(model_bytes),
                                 "size_bytes": len(model_bytes)}
    reference = (folder / contract.REFERENCE_FILENAME).read_bytes()
    assert manifest["reference"] == {"file": "reference.npz", "sha256": sha256_hex(reference),
                                     "size_bytes": len(reference)}
    assert manifest["contract"] == contract.contract_dict()
    assert manifest["classes"] == list(range(10))
    assert manifest["feature_range"] == [0, 16]
    assert manifest["opset"] == contract.OPSET
    assert manifest["recipe"] == trained_recipe.recipe
    assert manifest["hyperparameters"]["C"] > 0
    metrics = manifest["metrics"]
    assert metrics["test_correct"] == int(np.sum(
        trained_recipe.test_predictions == trained_recipe.split.y_test))
    assert 0.9 < metrics["cv_mean"] < 1 and 0 < metrics["cv_std"] < 0.05
    assert manifest["training_data"]["fingerprint"] == trained_recipe.split.fingerprint
    assert set(manifest["versions"]) == {"numpy", "scikit-learn", "skl2onnx", "onnx",
                                         "onnxruntime"}


def test_metadata_props_carry_the_manifest(trained_recipe):
    model = onnx.load_model_from_string(trained_recipe.model_bytes)
    props = {p.key: p.value for p in model.metadata_props}
    manifest = trained_recipe.manifest
    assert props["recipe"] == manifest["recipe"]
    for key in ("contract", "metrics", "hyperparameters", "versions", "training_data"):
        assert json.loads(props[key]) == manifest[key], key
    # The model's own hash cannot be inside the model; everything else is.
    assert "model" not in props


def test_golden_set_is_the_test_split_with_sklearn_outputs(trained_recipe):
    folder = trained_recipe.paths[0].parent
    with np.load(folder / contract.REFERENCE_FILENAME, allow_pickle=False) as npz:
        assert sorted(npz.files) == ["X", "labels", "probabilities", "y"]
        np.testing.assert_array_equal(npz["X"], trained_recipe.split.X_test)
        np.testing.assert_array_equal(npz["y"], trained_recipe.split.y_test)
        np.testing.assert_array_equal(npz["labels"], trained_recipe.test_predictions)
        # float32 on a grid of GOLDEN_PROBA_STEP, so every CPU writes the same bytes.
        np.testing.assert_allclose(
            npz["probabilities"], trained_recipe.estimator.predict_proba(npz["X"]), rtol=0,
            atol=GOLDEN_PROBA_STEP / 2)


def test_inference_package_loads_the_trained_set(trained_recipe):
    """The scorer reads what training writes: manifest hash checked, contract accepted."""
    model = Model.load(trained_recipe.paths[0].parent / contract.MODEL_FILENAME)
    labels = model.predict(trained_recipe.split.X_test.astype(np.float32))
    assert np.array_equal(labels, trained_recipe.test_predictions)


def test_each_figure_is_written_and_not_blank(trained_recipe):
    import matplotlib.image

    folder = trained_recipe.paths[0].parent / "report"
    names = sorted(p.name for p in folder.glob("*.png"))
    assert set(FIGURES.values()) <= set(names)
    readme = (folder / "README.md").read_text()
    for name in names:
        image = matplotlib.image.imread(folder / name)
        assert image.shape[0] > 100 and image.shape[1] > 100, (name, image.shape)
        # Not a single flat colour: a real plot has ink on a background.
        assert float(image[..., :3].std()) > 0.05, f"{name} looks blank"
        assert f"({name})" in readme


def test_report_readme_carries_the_metrics(trained_seed):
    readme = (trained_seed.paths[0].parent / "report" / "README.md").read_text()
    assert "0.9611 (346/360)" in readme
    assert trained_seed.manifest["model"]["sha256"] in readme


def test_committed_artifacts_verify(capsys):
    """The bundled model is what the manifest's recipe trains today (what users run in CI)."""
    assert main(["verify", "--artifacts", str(ARTIFACTS)]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().splitlines()[-1] == f"verified: {ARTIFACTS}"
    for row in ("max |dp|", "label mismatches", "accuracy"):
        assert row in out


def test_verify_fails_on_a_tampered_model(tmp_path, capsys):
    for name in SET:
        shutil.copy(ARTIFACTS / name, tmp_path / name)
    model = onnx.load(tmp_path / contract.MODEL_FILENAME)
    coef = next(t for t in model.graph.initializer if t.name == "coef")
    weights = onnx.numpy_helper.to_array(coef).copy()
    weights[:, 20] += 0.5
    coef.CopyFrom(onnx.numpy_helper.from_array(weights, "coef"))
    onnx.save(model, tmp_path / contract.MODEL_FILENAME)
    assert main(["verify", "--artifacts", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "NOT verified" in out
    assert "model sha256 matches manifest" in out and "FAIL" in out


def test_verify_without_artifacts_exits_66(tmp_path, capsys):
    assert main(["verify", "--artifacts", str(tmp_path)]) == 66
    err = capsys.readouterr().err
    assert err.startswith("digits-train: error: ") and "lacks model.json" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--recipe", "best"], "invalid choice: 'best'"),
        (["--epochs=3"], "unrecognized arguments: --epochs=3"),
        (["--recipe", "seed", "verify"], "apply to training, not verify"),
        (["verify", "--recipe", "seed"], "unrecognized arguments: --recipe seed"),
    ],
)
def test_usage_errors_exit_2_with_one_line(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and err.startswith("digits-train: error: ")


def test_missing_parent_directory_exits_73_and_writes_nothing(tmp_path, capsys):
    target = tmp_path / "no" / "such" / "dir"
    assert main(["--out", str(target), "--no-report"]) == 73
    assert "parent" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()


def test_unwritable_directory_exits_73_and_writes_nothing(tmp_path, monkeypatch, capsys):
    """Permission denied (simulated: tests may run as root, which ignores mode bits)."""
    import tempfile

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    out = tmp_path / "locked"
    out.mkdir()
    monkeypatch.setattr(tempfile, "mkdtemp", denied)
    assert main(["--out", str(out), "--no-report"]) == 73
    err = capsys.readouterr().err
    assert err == (
        f"digits-train: error: cannot write to output directory {out}: Permission denied\n"
    )
    assert list(out.iterdir()) == []


def test_output_path_that_is_a_file_exits_73(tmp_path, capsys):
    target = tmp_path / "artifacts"
    target.write_text("not a directory")
    assert main(["--out", str(target), "--no-report"]) == 73
    assert "is not a directory" in capsys.readouterr().err
    assert target.read_text() == "not a directory"


def test_failure_mid_write_leaves_the_old_set_untouched(tmp_path, monkeypatch, capsys):
    """A write that fails half-way (disk full, say) changes no destination file."""
    out = tmp_path / "out"
    out.mkdir()
    (out / contract.MODEL_FILENAME).write_bytes(b"old model")
    real_write = Path.write_bytes

    def failing_write(self: Path, data: bytes) -> int:
        if self.name == contract.REFERENCE_FILENAME:
            raise OSError(28, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", failing_write)
    assert main(["--out", str(out), "--no-report"]) == 73
    assert "No space left on device" in capsys.readouterr().err
    assert _files(out) == {contract.MODEL_FILENAME: b"old model"}
    assert not any(p.name.startswith(".digits-train") for p in out.iterdir())
