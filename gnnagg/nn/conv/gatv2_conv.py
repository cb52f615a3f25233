r"""GATv2's dynamic attention (Brody, Alon, Yahav, 2022) on gnnagg's kernels."""
from __future__ import annotations

from typing import Optional, Tuple, Union

from torch import Tensor
from torch_geometric.typing import SparseTensor
from torch_geometric.nn.conv import GATv2Conv as PyGGATv2Conv

from ...ops import gatv2_score, weighted_aggregate
from .attention import AttentionConv


class GATv2Conv(AttentionConv, PyGGATv2Conv):
    r"""The dynamic attention operator of `"How Attentive are Graph Attention
    Networks?" <https://arxiv.org/abs/2105.14491>`_ (Brody, Alon, Yahav,
    2022):

    .. math::
        \mathbf{x}^{\prime}_i = \sum_{j \in \mathcal{N}(i) \cup \{ i \}}
        \alpha_{i,j}\mathbf{\Theta}_{s}\mathbf{x}_{j}, \qquad
        \alpha_{i,j} = \mathrm{softmax}_j\Big(\mathbf{a}^{\top}
        \mathrm{LeakyReLU}\big(\mathbf{\Theta}_{s} \mathbf{x}_j
        + \mathbf{\Theta}_{t} \mathbf{x}_i + \mathbf{\Theta}_{e}
        \mathbf{e}_{j,i}\big)\Big)

    Applying :math:`\mathbf{a}` after the non-linearity makes the ranking of
    neighbours depend on the query node (dynamic attention), which GAT's
    static score cannot express.

    A drop-in replacement for :class:`torch_geometric.nn.GATv2Conv`, which it
    derives from (constructor, parameters, ``repr``, ``forward``). On the
    fused path (:class:`AttentionConv`) the ``E x H x C`` pre-activation is
    formed chunk by chunk (:func:`gnnagg.ops.gatv2_score`) instead of PyG's
    ``edge_update`` on gathered ``x_i``, ``x_j``: above one chunk it is
    recomputed in backward, never kept alive, and backward makes one such
    tensor. The weighted sum is a sparse product (per head, or all heads
    as one block matrix once the graph has served a few aggregations).

    Args:
        in_channels (int or tuple): input size (``-1``: lazy), or
            ``(source, destination)`` sizes.
        out_channels (int): output size per head.
        heads (int, optional): attention heads. (default: ``1``)
        concat (bool, optional): concatenate heads (else average).
            (default: ``True``)
        negative_slope (float, optional): LeakyReLU slope. (default: ``0.2``)
        dropout (float, optional): attention dropout. (default: ``0.0``)
        add_self_loops (bool, optional): drop self-loops, add one per node.
            (default: ``True``)
        edge_dim (int, optional): edge feature size. (default: ``None``)
        fill_value (float or Tensor or str, optional): self-loop edge
            features. (default: ``"mean"``)
        bias (bool, optional): learn biases. (default: ``True``)
        share_weights (bool, optional): one matrix for
            :math:`\mathbf{\Theta}_s` and :math:`\mathbf{\Theta}_t`.
            (default: ``False``)
        residual (bool, optional): learnable skip connection.
            (default: ``False``)
        **kwargs: :class:`~torch_geometric.nn.conv.MessagePassing` options.

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, F_{in})` or
          :math:`((|\mathcal{V}_s|, F_{s}), (|\mathcal{V}_t|, F_{t}))`,
          edge indices :math:`(2, |\mathcal{E}|)`, edge features
          :math:`(|\mathcal{E}|, D)` *(optional)*
        - **output:** :math:`(|\mathcal{V}_t|, H F_{out})` or
          :math:`(|\mathcal{V}_t|, F_{out})` without ``concat``

    Example::

        >>> conv = GATv2Conv(16, 8, heads=2)
        >>> conv(torch.randn(5, 16), torch.tensor([[0, 1], [1, 2]])).shape
        torch.Size([5, 16])
    """

    def forward(self, x: Union[Tensor, Tuple[Tensor, Tensor]], edge_index,
                edge_attr: Optional[Tensor] = None,
                return_attention_weights: Optional[bool] = None):
        if not self.fuse or isinstance(edge_index, SparseTensor):
            return super().forward(x, edge_index, edge_attr,
                                   return_attention_weights)
        # PyG's forward (the message path) calls edge_updater, this one not:
        # edge_updater_type: (x: PairTensor, edge_attr: OptTensor)
        H, C = self.heads, self.out_channels
        x_src, x_dst = self._split_input(x)
        if x_dst is None:
            raise ValueError("GATv2Conv needs destination features: pass "
                             "x=(x_src, x_dst)")
        res = None if self.res is None else self.res(x_dst)
        h_src = self.lin_l(x_src).view(-1, H, C)
        h_dst = (h_src if self.share_weights and x_dst is x_src else
                 self.lin_r(x_dst).view(-1, H, C))
        kept_edges = None
        if self._loops_found_in_forward(edge_index):
            kept_edges = (edge_index[0] != edge_index[1]).nonzero().view(-1)
        csr = self._graph(edge_index, h_src.size(0), h_dst.size(0),
                          kept_edges=kept_edges)
        edge_feat = self._edge_features(csr, edge_attr)
        scores = gatv2_score(
            h_src, h_dst, self.att.view(H, C), csr, self.negative_slope,
            edge_feat, None if edge_feat is None else self.lin_edge.weight)
        alpha = self._softmax_dropout(scores, csr.row, csr.rowptr,
                                      csr.num_dst)
        if self._through_propagate():
            out = self.propagate(csr.by_destination, x=(h_src, h_dst),
                                 alpha=alpha)
        else:
            out = weighted_aggregate(alpha, h_src, csr)
        out = self._merge_heads(out, res)
        if return_attention_weights:
            return out, self._attention_weights(edge_index, csr, alpha)
        return out
