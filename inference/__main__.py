"""``python -m digits_onnx.inference`` runs the ``digits-score`` command line."""

from .cli import entrypoint

if __name__ == "__main__":
    entrypoint()
