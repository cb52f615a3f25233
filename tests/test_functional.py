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
    # p is rounded to a multiple of 2^-16, the scale follows it
    scale = 65536 / (65536 - round(0.3 * 65536))
    assert torch.equal(out[kept], torch.full_like(out[kept], scale))
    out.sum().backward()
    torch.testing.assert_close(x.grad, out.detach())  # d out / d x = mask


def test_dropout_draws_every_entry_alike():
    """Four entries share a 64-bit random word: each of the four places
    keeps half of its entries at p = 0.5 (a biased bit would not)."""
    torch.manual_seed(1)
    kept = (dropout(torch.ones(400_000), 0.5) != 0).view(-1, 4).float()
    assert (kept.mean(0) - 0.5).abs().max() < 5 * (0.25 / 1e5) ** 0.5


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
    # p within 2^-17 of 0 or 1 rounds there
    assert torch.equal(dropout(x, 1e-7), x)
    assert torch.equal(dropout(x, 1 - 1e-7), torch.zeros_like(x))
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="p has to be between 0 and 1"):
            dropout(x, bad)


def test_dropout_off_the_cpu_is_pytorchs(monkeypatch):
    calls = []
    monkeypatch.setattr(functional.F, "dropout",
                        lambda x, p, training: calls.append(p) or x)
    x = torch.empty(4, 2, device="meta")
    assert dropout(x, 0.25) is x and calls == [0.25]

