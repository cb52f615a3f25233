r"""Graph attention (Velickovic et al., 2018) on gnnagg's CSR kernels."""
from __future__ import annotations

from typing import List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
import torch.nn.modules.module as module_hooks
from torch import Tensor
from torch_geometric.nn.dense.linear import (Linear,
                                              is_uninitialized_parameter)
from torch_geometric.typing import SparseTensor
from torch_geometric.nn.conv import GATConv as PyGGATConv

from ...ops import endpoint_sum, weighted_aggregate
from .attention import AttentionConv


def _plain_linear(lin) -> bool:
    """Whether ``lin`` is an initialised ``Linear`` (PyG's or torch's) whose
    call nothing observes: no forward hooks of its own or global ones."""
    return type(lin) in (Linear, torch.nn.Linear) and \
        not is_uninitialized_parameter(lin.weight) and \
        not (lin._forward_hooks or lin._forward_pre_hooks or
             module_hooks._global_forward_hooks or
             module_hooks._global_forward_pre_hooks)


class GATConv(AttentionConv, PyGGATConv):
    r"""The graph attentional operator of `"Graph Attention Networks"
    <https://arxiv.org/abs/1710.10903>`_ (Velickovic et al., 2018):

    .. math::
        \mathbf{x}^{\prime}_i = \sum_{j \in \mathcal{N}(i) \cup \{ i \}}
        \alpha_{i,j}\mathbf{\Theta}_{s}\mathbf{x}_{j}, \qquad
        \alpha_{i,j} = \mathrm{softmax}_j\Big(\mathrm{LeakyReLU}\big(
        \mathbf{a}^{\top}_{s}\mathbf{\Theta}_{s}\mathbf{x}_j +
        \mathbf{a}^{\top}_{t}\mathbf{\Theta}_{t}\mathbf{x}_i +
        \mathbf{a}^{\top}_{e}\mathbf{\Theta}_{e}\mathbf{e}_{j,i}\big)\Big)

    per head, heads concatenated (``concat=True``) or averaged.

    A drop-in replacement for :class:`torch_geometric.nn.GATConv`, which it
    derives from: the same constructor, defaults, parameters, ``repr`` and
    ``forward``. gnnagg adds a fused path (:class:`AttentionConv`): the
    score is static, a sum of per-node terms, so only ``E x H`` scores are
    formed per edge; the edge term folds
    :math:`\mathbf{a}_e^\top\mathbf{\Theta}_e` into one ``D x H`` matrix; the
    softmax runs on CSR segments and the weighted sum is a sparse product
    per head (:func:`gnnagg.ops.weighted_aggregate`).

    Args:
        in_channels (int or tuple): input size (``-1``: lazy), or
            ``(source, destination)`` sizes for a bipartite graph.
        out_channels (int): output size per head.
        heads (int, optional): attention heads. (default: ``1``)
        concat (bool, optional): concatenate heads (else average them).
            (default: ``True``)
        negative_slope (float, optional): LeakyReLU slope. (default: ``0.2``)
        dropout (float, optional): dropout probability of the attention
            coefficients. (default: ``0.0``)
        add_self_loops (bool, optional): drop existing self-loops and add
            one per node. (default: ``True``)
        edge_dim (int, optional): edge feature size. (default: ``None``)
        fill_value (float or Tensor or str, optional): edge features of added
            self-loops: a value or a reduction (``"mean"``, ``"add"``,
            ``"min"``, ``"max"``, ``"mul"``) of the node's incoming edges'.
            (default: ``"mean"``)
        bias (bool, optional): learn an additive bias. (default: ``True``)
        residual (bool, optional): learnable skip connection.
            (default: ``False``)
        **kwargs: :class:`~torch_geometric.nn.conv.MessagePassing` options.

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, F_{in})` or
          :math:`((|\mathcal{V}_s|, F_{s}), (|\mathcal{V}_t|, F_{t}))`,
          edge indices :math:`(2, |\mathcal{E}|)` (or an ``EdgeIndex`` or a
          transposed sparse adjacency), edge features
          :math:`(|\mathcal{E}|, D)` *(optional)*
        - **output:** :math:`(|\mathcal{V}_t|, H F_{out})` or
          :math:`(|\mathcal{V}_t|, F_{out})` without ``concat``; with
          ``return_attention_weights`` also ``(edge_index, alpha)``,
          :math:`\alpha` of shape :math:`(|\mathcal{E}| + |\mathcal{V}|, H)`

    Example::

        >>> conv = GATConv(16, 8, heads=4)
        >>> conv(torch.randn(5, 16), torch.tensor([[0, 1], [1, 2]])).shape
        torch.Size([5, 32])
    """

    def forward(self, x: Union[Tensor, Tuple[Tensor, Optional[Tensor]]],
                edge_index, edge_attr: Optional[Tensor] = None,
                size: Optional[Tuple[int, int]] = None,
                return_attention_weights: Optional[bool] = None):
        if not self.fuse or isinstance(edge_index, SparseTensor):
            return super().forward(x, edge_index, edge_attr, size,
                                   return_attention_weights)
        x_src, x_dst = self._split_input(x)
        res = None if self.res is None or x_dst is None else self.res(x_dst)
        lin_src = self.lin if self.lin is not None else self.lin_src
        lin_dst = self.lin if self.lin is not None else self.lin_dst
        if x_dst is x_src and lin_dst is lin_src:  # one projection serves
            h_src, (alpha_src, alpha_dst) = self._project(
                x_src, lin_src, (self.att_src, self.att_dst))
            h_dst = h_src
        else:
            h_src, (alpha_src,) = self._project(x_src, lin_src,
                                                (self.att_src,))
            h_dst, alpha_dst = None, None
            if x_dst is not None:
                h_dst, (alpha_dst,) = self._project(x_dst, lin_dst,
                                                    (self.att_dst,))
        kept_edges = None
        if self._loops_found_in_forward(edge_index):
            kept_edges = (edge_index[0] != edge_index[1]).nonzero().view(-1)
        csr = self._graph(edge_index, h_src.size(0),
                          None if h_dst is None else h_dst.size(0), size,
                          kept_edges)
        edge_feat = self._edge_features(csr, edge_attr)
        if self._through_propagate():
            graph = csr.by_destination
            alpha = self.edge_updater(graph, alpha=(alpha_src, alpha_dst),
                                      edge_attr=edge_feat)
            out = self.propagate(graph, x=(h_src, h_dst), alpha=alpha)
        else:
            if type(self).edge_update is GATConv.edge_update:
                # summed on the edges by one operator (whose backward sums
                # by source and destination without index_add_)
                alpha_j, alpha_i = endpoint_sum(alpha_src, alpha_dst,
                                                csr), None
            else:  # an override sees both terms, as PyG hands them over
                alpha_j = alpha_src.index_select(0, csr.col)
                alpha_i = None if alpha_dst is None else \
                    alpha_dst.index_select(0, csr.row)
            alpha = self.edge_update(alpha_j, alpha_i, edge_feat, csr.row,
                                     csr.rowptr, csr.num_dst)
            out = weighted_aggregate(alpha, h_src, csr)
        out = self._merge_heads(out, res)
        if return_attention_weights:
            return out, self._attention_weights(edge_index, csr, alpha)
        return out

    def _project(self, x: Tensor, lin,
                 atts: Tuple[Tensor, ...]) -> Tuple[Tensor, List[Tensor]]:
        r"""``lin(x)`` as ``(N, H, C)`` and, for each attention vector
        :math:`\mathbf{a}` of ``atts``, the node scores
        :math:`\mathbf{a}^\top \mathbf{\Theta} \mathbf{x}_i` per head
        ``(N, H)``.

        For a plain linear map the scores are
        :math:`\mathbf{x}_i^\top (\mathbf{\Theta}^\top \mathbf{a})`: one
        product with the folded ``H x F_in`` matrices stacked gives every
        score (no ``N x H x C`` product and sum). It is apart from the
        features' product: stacked under :math:`\mathbf{\Theta}`, they made
        the features a strided slice, which the sum copied, and their
        backward concatenated the gradients first (on 128 molecules 1.22
        against 1.04 ms forward and backward, at ogbn-arxiv scale 131
        against 92 ms).
        Any other module in ``lin`` (a wrapper, an adapter, a lazy or hooked
        ``Linear``) is called, and the scores sum over its output, as in
        PyG."""
        H, C = self.heads, self.out_channels
        if not _plain_linear(lin):
            h = lin(x).view(-1, H, C)
            return h, [(h * att).sum(-1) for att in atts]
        weight = lin.weight.view(H, C, -1)
        folded = torch.cat([(weight * att.view(H, C, 1)).sum(1)
                            for att in atts])
        h = F.linear(x, lin.weight)
        scores = list(F.linear(x, folded).split(H, dim=-1))
        if lin.bias is not None:
            bias = lin.bias.view(H, C)
            h = h + lin.bias
            scores = [score + (bias * att.view(H, C)).sum(-1)
                      for score, att in zip(scores, atts)]
        return h.view(-1, H, C), scores

    def edge_update(self, alpha_j: Tensor, alpha_i: Optional[Tensor],
                    edge_attr: Optional[Tensor], index: Tensor,
                    ptr: Optional[Tensor], dim_size: Optional[int]) -> Tensor:
        r""":math:`\alpha_{ji}` from the per-node terms; the edge term
        :math:`\mathbf{a}_e^\top \mathbf{\Theta}_e \mathbf{e}_{ji}` as
        :math:`\mathbf{e}_{ji}^\top (\mathbf{\Theta}_e^\top \mathbf{a}_e)`,
        one ``D x H`` matrix instead of ``E x H x C`` projections."""
        alpha = alpha_j if alpha_i is None else alpha_j + alpha_i
        if index.numel() == 0:
            return alpha
        if edge_attr is not None and self.lin_edge is not None:
            if edge_attr.dim() == 1:
                edge_attr = edge_attr.view(-1, 1)
            H, C = self.heads, self.out_channels
            att_edge = (self.lin_edge.weight.view(H, C, -1) *
                        self.att_edge.view(H, C, 1)).sum(1)
            alpha = alpha + edge_attr @ att_edge.t()
        alpha = F.leaky_relu(alpha, self.negative_slope)
        return self._softmax_dropout(alpha, index, ptr, dim_size)
