"""ONNX operators that TensorRT 10's ONNX parser supports, and a check against them.

Source of the list: onnx/onnx-tensorrt ``docs/operators.md`` at commit
96e781103cfc4adf4a6bb557e94bac8e693f6f4c ("ONNX-TensorRT 10.1 GA release",
2024-06-17), every row whose "Supported" column is ``Y``.  That table covers
the default ONNX domain, opsets 9..20.  It says nothing about per-op
restrictions (e.g. Conv weights must be initializers), which the real
``trt.OnnxParser`` still checks at engine build time; this check exists so a
CPU-only export catches an unsupported op long before a robot does.
"""
from __future__ import annotations

from typing import Any

TRT10_ONNX_OPSET_RANGE = (9, 20)

TRT10_SUPPORTED_OPS: frozenset[str] = frozenset({
    "Abs", "Acos", "Acosh", "Add", "And", "ArgMax", "ArgMin", "Asin", "Asinh", "Atan",
    "Atanh", "AveragePool", "BatchNormalization", "Cast", "CastLike", "Ceil", "Celu",
    "Clip", "Concat", "Constant", "ConstantOfShape", "Conv", "ConvTranspose", "Cos", "Cosh",
    "CumSum", "DeformConv", "DepthToSpace", "DequantizeLinear", "Div", "Dropout", "Einsum",
    "Elu", "Equal", "Erf", "Exp", "Expand", "EyeLike", "Flatten", "Floor", "Gather",
    "GatherElements", "GatherND", "Gelu", "Gemm", "GlobalAveragePool", "GlobalLpPool",
    "GlobalMaxPool", "Greater", "GreaterOrEqual", "GridSample", "GroupNormalization", "GRU",
    "HardSigmoid", "HardSwish", "Hardmax", "Identity", "If", "ImageScaler",
    "InstanceNormalization", "IsInf", "IsNaN", "LayerNormalization", "LeakyRelu", "Less",
    "LessOrEqual", "Log", "LogSoftmax", "Loop", "LRN", "LSTM", "LpNormalization", "LpPool",
    "MatMul", "Max", "MaxPool", "Mean", "MeanVarianceNormalization", "Min", "Mish", "Mod",
    "Mul", "Neg", "NonMaxSuppression", "NonZero", "Not", "OneHot", "Or", "Pad",
    "ParametricSoftplus", "Pow", "PRelu", "QuantizeLinear", "RandomNormal",
    "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Range", "Reciprocal",
    "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean",
    "ReduceMin", "ReduceProd", "ReduceSum", "ReduceSumSquare", "Relu", "Reshape", "Resize",
    "ReverseSequence", "RNN", "RoiAlign", "Round", "ScaledTanh", "Scan", "Scatter",
    "ScatterElements", "ScatterND", "Selu", "Shape", "Shrink", "Sigmoid", "Sign", "Sin",
    "Sinh", "Size", "Slice", "Softmax", "Softplus", "Softsign", "SpaceToDepth", "Split",
    "Sqrt", "Squeeze", "Sub", "Sum", "Tan", "Tanh", "ThresholdedRelu", "Tile", "TopK",
    "Transpose", "Trilu", "Unsqueeze", "Upsample", "Where", "Xor",
})


def unsupported_ops(model: Any) -> list[str]:
    """Sorted ``domain::op`` names in ``model`` (an ``onnx.ModelProto``) that TensorRT 10 lacks.

    Subgraphs (If/Loop bodies) are included; ops in a custom domain are always
    reported (they would need a plugin).
    """
    bad: set[str] = set()

    def visit(graph: Any) -> None:
        for node in graph.node:
            domain = node.domain or "ai.onnx"
            if domain != "ai.onnx" or node.op_type not in TRT10_SUPPORTED_OPS:
                bad.add(f"{domain}::{node.op_type}")
            for attr in node.attribute:
                if attr.HasField("g"):
                    visit(attr.g)
                for g in attr.graphs:
                    visit(g)

    visit(model.graph)
    return sorted(bad)


def opset_in_range(model: Any) -> bool:
    """Whether the default-domain opset of ``model`` is one TensorRT 10 parses."""
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return TRT10_ONNX_OPSET_RANGE[0] <= imp.version <= TRT10_ONNX_OPSET_RANGE[1]
    return False
