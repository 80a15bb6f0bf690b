"""The model server: Open Inference Protocol (V2) over ONNX, validation, batching,
metrics and tracing."""

from shipml.serving.app import ModelServer
from shipml.serving.predictor import Outputs, Predictor
from shipml.serving.validation import Validator

__all__ = ["ModelServer", "Outputs", "Predictor", "Validator"]
