import pytest
import torch

import gnnagg.nn.functional as functional
from gnnagg.nn.functional import dropout


def test_dropout_keeps_one_minus_p_and_rescales_unbiased():
    torch.manual_seed(0)
    x = torch.ones(1_000_000, requires_grad=True)
    out = dropout(x, 0.3)
    kept = out != 0
    # the kept share is binomial: 5 standard deviations around 0.7
    assert abs(kept.float().mean().item() - 0.7) < 5 * (0.21 / 1e6) ** 0.5
    torch.testing.assert_close(out[kept], torch.full_like(out[kept], 1 / 0.7))
    out.sum().backward()
    torch.testing.assert_close(x.grad, out.detach())  # d out / d x = mask


def test_dropout_is_seeded_and_leaves_dtypes():
    x = torch.randn(50, 8)
    torch.manual_seed(3)
    first = dropout(x, 0.5)
    torch.manual_seed(3)
    assert torch.equal(first, dropout(x, 0.5))
    for dtype in (torch.float64, torch.bfloat16, torch.float16):
        assert dropout(x.to(dtype), 0.5).dtype == dtype


def test_dropout_identity_and_extremes_as_pytorchs():
    x = torch.randn(10, 3)
    assert dropout(x, 0.5, training=False) is x
    assert dropout(x, 0.0) is x
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="p has to be between 0 and 1"):
            dropout(x, bad)


def test_dropout_off_the_cpu_is_pytorchs(monkeypatch):
    calls = []
    monkeypatch.setattr(functional.F, "dropout",
                        lambda x, p, training: calls.append(p) or x)
    x = torch.empty(4, 2, device="meta")
    assert dropout(x, 0.25) is x and calls == [0.25]
