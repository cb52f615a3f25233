"""Aggregations usable as ``aggr=`` of any PyG ``MessagePassing``, running on
gnnagg's segment kernels."""
from .base import SegmentAggregation
from .basic import (MaxAggregation, MeanAggregation, MinAggregation,
                    MulAggregation, StatAggregation, StdAggregation,
                    SumAggregation, VarAggregation)
from .lcm import LCMAggregation, RecurrentAggregation, SymmetricMLP
from .multi import MultiAggregation, resolve_aggregation
from .power_mean import PowerMeanAggregation
from .scaler import DegreeScalerAggregation, degree_histogram
from .softmax import SoftmaxAggregation
from .topm import TopMAttentionAggregation

__all__ = [
    "SegmentAggregation", "StatAggregation", "SumAggregation",
    "MeanAggregation", "MinAggregation", "MaxAggregation", "MulAggregation",
    "VarAggregation",
    "StdAggregation", "SoftmaxAggregation", "PowerMeanAggregation",
    "MultiAggregation", "DegreeScalerAggregation", "degree_histogram",
    "resolve_aggregation", "LCMAggregation", "RecurrentAggregation",
    "SymmetricMLP", "TopMAttentionAggregation",
]
