"""The choices of the inference path, declared once and importable without torch (the CLI builds its help from
them before anything heavy is loaded)."""

BACKENDS = ("auto", "eager", "compile", "onnxruntime")
PRECISIONS = ("auto", "fp32", "bf16")
