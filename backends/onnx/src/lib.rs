//! ONNX export. (Stub.)
