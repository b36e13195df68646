//! ONNX import. (Stub.)
