"""``python -m digits_onnx.training``: the same command line as ``digits-train``."""

from digits_onnx.training.cli import entrypoint

if __name__ == "__main__":
    entrypoint()
