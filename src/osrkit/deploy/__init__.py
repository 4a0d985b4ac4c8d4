"""Deployment: predict on new images, calibrated thresholds, export to ONNX/TorchScript, reports."""
