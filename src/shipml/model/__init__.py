"""Model packaging (ONNX + signature + profile + lineage), conversion and safe loading."""

from shipml.model.convert import ParityReport, check_parity, to_onnx
from shipml.model.loading import is_pickle, load_skops, refuse_pickle
from shipml.model.package import ModelPackage, build_package
from shipml.model.signature import Feature, Signature, infer_signature, model_input, onnx_feeds

__all__ = [
    "Feature",
    "ModelPackage",
    "ParityReport",
    "Signature",
    "build_package",
    "check_parity",
    "infer_signature",
    "is_pickle",
    "load_skops",
    "model_input",
    "onnx_feeds",
    "refuse_pickle",
    "to_onnx",
]
