import pytest
import torch

from trainables.models import MODELS, build_model


IMAGE_MODELS = [m for m in MODELS if m != "cnn1d"]   # cnn1d takes signals: test_benchmark_units


@pytest.mark.parametrize("name", IMAGE_MODELS)
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32)])
def test_models_map_inputs_to_class_scores(name, shape):
    torch.manual_seed(0)
    model = build_model(name, shape, 10)
    out = model(torch.randn(5, *shape))
    assert out.shape == (5, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_wrn_16_1_has_the_papers_size_and_batchnorm():
    model = build_model("wrn-16-1", (3, 32, 32), 10)
    n_params = sum(p.numel() for p in model.parameters())
    # WRN-16-1 has about 0.17M parameters (Zagoruyko & Komodakis, table 1 family)
    assert 150_000 < n_params < 200_000
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def test_mlp_options_and_bad_input():
    model = build_model("mlp", (16,), 3, hidden=(7, 5), activation="tanh")
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    assert [l.out_features for l in linears] == [7, 5, 3]
    assert any(isinstance(m, torch.nn.Tanh) for m in model)
    with pytest.raises(ValueError, match="mlp, cnn1d, lenet, wrn-16-1"):
        build_model("resnet50", (3, 32, 32), 10)
    with pytest.raises(ValueError, match="activation"):
        build_model("mlp", (16,), 3, activation="gelu")
    with pytest.raises(ValueError, match="image inputs"):
        build_model("lenet", (16,), 3)
