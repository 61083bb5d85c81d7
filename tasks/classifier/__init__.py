"""The classifier: base models, the Lightning module, training, inference by MLflow URI."""
