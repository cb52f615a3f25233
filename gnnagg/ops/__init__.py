"""Kernels on a cached CSR view of a graph: pure functions, custom autograd
where it saves time or memory."""
from .backend import get_backend, has_torch_scatter, set_backend
from .csr import (CSRGraph, build_csr, cached_views, check_edge_index,
                  clear_csr_cache, csr_from_index, csr_of_adjacency, csr_view)
from .degree_linear import (MAX_DEGREE_GROUPS, degree_scaled_linear,
                            group_products, groups_by_degree)
from .dynamic_attention import gatv2_score
from .endpoints import endpoint_sum
from .permute import permute_rows
from .power import clamped_power
from .statistics import (message_stats, neighbor_stats, segment_stats,
                         shift_stats)
from .library import generic_forced, use_generic
from .message_attention import message_attention
from .segment import (gather_extremes, gather_moments, gather_reduce,
                      message_counts, message_moments, reduce_messages,
                      segment_max, segment_min, segment_reduce)
from .scratch import clear_scratch
from .segment_tree import segment_tree_reduce
from .softmax import message_softmax, segment_softmax
from .spmm import weighted_aggregate
from .topm import segment_topm

__all__ = [
    "CSRGraph", "build_csr", "check_edge_index", "csr_view", "csr_from_index",
    "csr_of_adjacency", "cached_views", "clear_csr_cache",
    "segment_reduce", "segment_max", "segment_min", "reduce_messages",
    "gather_reduce", "gather_extremes", "gather_moments", "message_counts",
    "message_stats",
    "message_moments",
    "use_generic", "generic_forced", "clear_scratch",
    "set_backend", "get_backend", "has_torch_scatter",
    "segment_stats", "neighbor_stats", "shift_stats", "segment_softmax",
    "message_softmax",
    "segment_tree_reduce", "segment_topm", "weighted_aggregate",
    "gatv2_score", "endpoint_sum", "message_attention", "permute_rows",
    "degree_scaled_linear", "group_products", "groups_by_degree",
    "MAX_DEGREE_GROUPS",
    "clamped_power",
]
