import importlib.util

import pytest
import torch

from trainables.data import DATASETS, load_dataset


def test_digits_splits_partition_the_bundled_data():
    d = load_dataset("digits")
    assert d.input_shape == (1, 8, 8) and d.num_classes == 10
    assert len(d.y_train) + len(d.y_val) + len(d.y_test) == 1797
    assert abs(len(d.y_test) / 1797 - 0.2) < 0.01
    assert abs(len(d.y_val) / (len(d.y_train) + len(d.y_val)) - 0.1) < 0.01
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert float(d.x_train.min()) >= 0.0 and float(d.x_train.max()) <= 1.0
    # every class appears in every split
    for y in (d.y_train, d.y_val, d.y_test):
        assert set(y.tolist()) == set(range(10))


def test_validation_is_carved_from_training_never_from_test():
    a, b = load_dataset("digits", split_seed=0), load_dataset("digits", split_seed=1)
    # the test split does not move with the validation split's seed ...
    assert torch.equal(a.x_test, b.x_test) and torch.equal(a.y_test, b.y_test)
    # ... while validation does, and train+val is the same pool either way
    assert not torch.equal(a.x_val, b.x_val)
    pool_a = torch.cat([a.x_train, a.x_val]).flatten(1)
    pool_b = torch.cat([b.x_train, b.x_val]).flatten(1)
    key = lambda p: sorted(map(tuple, p.tolist()))  # noqa: E731
    assert key(pool_a) == key(pool_b)


def test_synthetic_is_seeded_and_sized():
    a = load_dataset("synthetic", n_train=100, n_val=20, n_test=30, n_features=5, n_classes=3, seed=4)
    b = load_dataset("synthetic", n_train=100, n_val=20, n_test=30, n_features=5, n_classes=3, seed=4)
    c = load_dataset("synthetic", n_train=100, n_val=20, n_test=30, n_features=5, n_classes=3, seed=5)
    assert a.x_train.shape == (100, 5) and len(a.y_val) == 20 and len(a.y_test) == 30
    assert torch.equal(a.x_train, b.x_train) and not torch.equal(a.x_train, c.x_train)
    assert int(a.y_train.max()) < 3


def test_bad_names_and_options():
    with pytest.raises(ValueError, match="digits"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match="val_fraction"):
        load_dataset("digits", val_fraction=0.0)
    with pytest.raises(ValueError, match="n_classes"):
        load_dataset("synthetic", n_classes=1)
    with pytest.raises(ValueError, match="no options"):
        load_dataset("digits", n_train=3)


@pytest.mark.parametrize("name", [n for n in DATASETS if n in ("mnist", "svhn", "cifar10")])
def test_vision_datasets_fail_clearly_when_missing(name, tmp_path):
    if importlib.util.find_spec("torchvision") is None:
        with pytest.raises(ImportError, match=r"tune-ext\[vision\]"):
            load_dataset(name, root=str(tmp_path))
    else:
        with pytest.raises(FileNotFoundError, match="download=True"):
            load_dataset(name, root=str(tmp_path))
