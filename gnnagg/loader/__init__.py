"""Mini-batches of a large graph: PyG's ``NeighborLoader`` with gnnagg's
neighbour sampler, for installs without ``pyg-lib`` or ``torch-sparse``."""
from .neighbor_sampler import NeighborSampler, has_compiled_sampler, \
    neighbor_loader
from .sampling import SampledSubgraph, sample_neighbors

__all__ = ["NeighborSampler", "neighbor_loader", "has_compiled_sampler",
           "sample_neighbors", "SampledSubgraph"]
