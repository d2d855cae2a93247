"""The bundled model artifacts, shipped inside the inference package."""
