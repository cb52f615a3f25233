r"""The ``m`` highest-scoring entries of every segment.

For segments of a CSR view and per-entry scores (one column per head), marks
each segment's ``m`` best entries (all of them where the segment is no longer
than ``m``). Two stable sorts (score descending, then segment) rank every
entry within its segment at :math:`O(E \log E)`, with no padding to the
longest segment; ties keep the lower entry index, so the result is
deterministic.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .csr import segment_ids


@torch.library.custom_op("gnnagg::segment_topm", mutates_args=())
def _segment_topm(scores: Tensor, rowptr: Tensor, m: int) -> Tensor:
    columns = scores.unsqueeze(-1) if scores.dim() == 1 else scores
    num_entries, heads = columns.shape
    segment = segment_ids(rowptr, num_entries)
    # entries come grouped by segment, so after the two sorts position k
    # still belongs to segment[k]: its rank is the same for every head
    keep = (torch.arange(num_entries, device=rowptr.device) -
            rowptr[segment]) < m
    mask = torch.zeros_like(columns, dtype=torch.bool)
    for head in range(heads):
        order = torch.argsort(columns[:, head], descending=True, stable=True)
        order = order[torch.argsort(segment[order], stable=True)]
        mask[order, head] = keep
    return mask.view(scores.shape)


@_segment_topm.register_fake
def _segment_topm_fake(scores, rowptr, m):
    return torch.empty_like(scores, dtype=torch.bool)


def segment_topm(scores: Tensor, rowptr: Tensor, m: int) -> Tensor:
    """Boolean mask, shaped like ``scores`` (``(E,)`` or ``(E, H)``), of the
    ``m`` highest scores of every segment ``rowptr[i]:rowptr[i+1]`` (per
    column). NaN scores are refused (a host sync; skipped while
    ``torch.compile`` traces)."""
    if isinstance(m, bool) or not isinstance(m, int) or m < 1:
        raise ValueError(f"m must be a positive int, got {m!r}")
    if not torch.compiler.is_compiling():
        if scores.size(0) != int(rowptr[-1]):
            raise ValueError(f"expected {int(rowptr[-1])} scores, got "
                             f"{scores.size(0)}")
        if torch.isnan(scores).any():
            raise ValueError("scores contain NaN")
    return _segment_topm(scores, rowptr, m)
