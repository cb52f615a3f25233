"""Every layer and the sampler on CUDA tensors: same outputs and gradients
as on the CPU with the same weights. Runs only where CUDA is present."""
import copy

import pytest
import torch

from gnnagg.nn import GATConv, GATv2Conv, PNAConv, TANGNNConv
from gnnagg.nn.aggr import (LCMAggregation, MultiAggregation,
                            TopMAttentionAggregation, degree_histogram)
from gnnagg.loader import sample_neighbors
from gnnagg.ops import build_csr

from conftest import random_graph

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA device")

N, F = 300, 16


def _layers():
    edge_index = random_graph(N, 3000, seed=4)
    from torch_geometric.data import Data
    deg = degree_histogram([Data(edge_index=edge_index, num_nodes=N)])
    return edge_index, {
        "GATConv": lambda: GATConv(F, 8, heads=2, edge_dim=4),
        "GATv2Conv": lambda: GATv2Conv(F, 8, heads=2, edge_dim=4),
        "PNAConv": lambda: PNAConv(F, 16, ["mean", "min", "max", "std"],
                                   ["identity", "amplification",
                                    "attenuation"], deg, edge_dim=4),
        "TANGNNConv": lambda: TANGNNConv(F, 16, m=8),
    }


@pytest.mark.parametrize("name", ["GATConv", "GATv2Conv", "PNAConv",
                                  "TANGNNConv"])
def test_layer_on_cuda_equals_cpu(name):
    edge_index, factories = _layers()
    layer = factories[name]()
    x = torch.randn(N, F, requires_grad=True)
    edge_attr = torch.randn(edge_index.size(1), 4)
    args = (edge_index,) if name == "TANGNNConv" else (edge_index, edge_attr)
    out = layer(x, *args)
    out.square().sum().backward()
    gpu = copy.deepcopy(layer).cuda()
    x_gpu = x.detach().cuda().requires_grad_()
    out_gpu = gpu(x_gpu, *(a.cuda() for a in args))
    out_gpu.square().sum().backward()
    torch.testing.assert_close(out_gpu.cpu(), out, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(x_gpu.grad.cpu(), x.grad, atol=1e-4,
                               rtol=1e-4)
    for (key, p), p_gpu in zip(layer.named_parameters(), gpu.parameters()):
        torch.testing.assert_close(p_gpu.grad.cpu(), p.grad, atol=1e-4,
                                   rtol=1e-4, msg=key)


@pytest.mark.parametrize("make", [
    lambda: LCMAggregation(F, F),
    lambda: TopMAttentionAggregation(F, m=4),
    lambda: MultiAggregation(["mean", "min", "max", "std"]),
])
def test_aggregation_on_cuda_equals_cpu(make):
    edge_index = random_graph(N, 2000, seed=5)
    aggregation = make()
    messages = torch.randn(edge_index.size(1), F, requires_grad=True)
    out = aggregation(messages, edge_index[1], dim_size=N)
    out.sum().backward()
    gpu = copy.deepcopy(aggregation).cuda()
    messages_gpu = messages.detach().cuda().requires_grad_()
    out_gpu = gpu(messages_gpu, edge_index[1].cuda(), dim_size=N)
    out_gpu.sum().backward()
    torch.testing.assert_close(out_gpu.cpu(), out, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(messages_gpu.grad.cpu(), messages.grad,
                               atol=1e-4, rtol=1e-4)


def test_sampler_on_cuda_gives_real_edges():
    edge_index = random_graph(N, 3000, seed=6)
    csr = build_csr(edge_index, N, N)
    colptr, row = csr.rowptr, csr.col
    out = sample_neighbors(colptr.cuda(), row.cuda(),
                           torch.arange(10).cuda(), [5, 5])
    assert out.node.is_cuda
    assert torch.equal(row.cuda()[out.edge], out.node[out.row])
