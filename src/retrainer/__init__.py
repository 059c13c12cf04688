"""retrainer: continuous training and deployment for MLflow models."""

__version__ = "0.1.0"
