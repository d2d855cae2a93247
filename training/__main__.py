"""``python -m training``: the same command line as ``digits-train``."""

from training.cli import entrypoint

if __name__ == "__main__":
    entrypoint()
