"""``repr(Model)`` says which model it is: where it came from, its hash, opset and recipe."""

from __future__ import annotations

from digits_onnx.inference import Model, bundled_model_path


def test_repr_of_the_bundled_model():
    model = Model.load()
    assert repr(model) == (
        f"Model({str(bundled_model_path())!r}, sha256={model.sha256[:12]!r}, "
        "opset=17, recipe='default')"
    )


def test_repr_without_a_manifest_reads_the_model_metadata():
    data = bundled_model_path().read_bytes()
    model = Model(data, display="<bytes>", verify_hash=False)
    assert repr(model) == (
        f"Model('<bytes>', sha256={model.sha256[:12]!r}, opset=17, recipe='default')"
    )


def test_repr_leaves_out_what_is_unknown(model):
    """The test model carries no recipe or opset in a manifest or its metadata."""
    text = repr(model)
    assert text.startswith(f"Model({model.display!r}, sha256={model.sha256[:12]!r}")
    assert "recipe" not in text and text.endswith(")")
