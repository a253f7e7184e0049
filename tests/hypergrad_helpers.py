"""Shared by the hypergradient tests: float64 data and a relative comparison of hypergradients."""
import torch

D = torch.float64


def data(steps, seed=1):
    """``steps`` training batches of 8 and one validation batch of 24: 5 features, 3 classes."""
    g = torch.Generator().manual_seed(seed)
    batches = [(torch.randn(8, 5, generator=g, dtype=D), torch.randint(0, 3, (8,), generator=g))
               for _ in range(steps)]
    val = (torch.randn(24, 5, generator=g, dtype=D), torch.randint(0, 3, (24,), generator=g))
    return batches, val


def assert_close(a, b, rtol=1e-8):
    """Every tensor of ``a`` within ``rtol`` of ``b``'s, relative to ``b``'s largest entry."""
    assert a.keys() == b.keys()
    for k in a:
        scale = b[k].abs().max().clamp_min(1e-12)
        assert (a[k] - b[k]).abs().max() / scale < rtol, (k, a[k], b[k])
