"""digits-onnx: a digits classifier trained with scikit-learn, shipped as portable ONNX.

Two packages live under this one distinctive import name, so that neither collides with
another distribution's top-level module:

- :mod:`digits_onnx.inference`: score files with the ONNX model (numpy + onnxruntime only);
- :mod:`digits_onnx.training`: train, export and verify the model (needs the ``train`` extra).

In the repository they are the top-level folders ``inference/`` and ``training/``.
"""
