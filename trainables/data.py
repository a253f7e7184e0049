"""Datasets by name, as train / validation / test tensors.

The validation split is always carved out of the training data, never out of the test split
(Micaelli & Storkey 2021 stress this: validating on the test set flatters greedy methods).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

DATASETS = ("digits", "mnist1d", "synthetic", "mnist", "svhn", "cifar10")
VISION_DATASETS = ("mnist", "svhn", "cifar10")


@dataclass
class Splits:
    """Tensors of one dataset: inputs are float32 (N, C, H, W) or (N, D), targets int64 (N,)."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def to(self, device) -> "Splits":
        moved = {k: getattr(self, k).to(device) for k in
                 ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")}
        return Splits(name=self.name, num_classes=self.num_classes, **moved)


def load_dataset(name: str = "digits", *, root: str | None = None, val_fraction: float = 0.1,
                 split_seed: int = 0, **kwargs) -> Splits:
    """Return the train / validation / test splits of dataset ``name``.

    name: one of ``DATASETS``. ``digits`` (scikit-learn's bundled 8x8 digits) needs nothing;
        ``mnist1d`` (Greydanus 2020, 4000 train / 1000 test signals of length 40) is generated
        locally by the ``mnist1d`` package and cached (``mnist1d_arrays``);
        ``synthetic`` is generated (kwargs: n_train, n_val, n_test, n_features, n_classes, seed);
        ``mnist``, ``svhn`` and ``cifar10`` need torchvision and the data already under ``root``.
    val_fraction: share of the training data held out for validation.
    split_seed: seed of the train/validation (and, for digits, test) split, fixed per task so
        every trial and method sees the same splits.
    """
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(DATASETS)}; got {name!r}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if name == "synthetic":
        return _synthetic(**kwargs)
    if kwargs:
        raise ValueError(f"dataset {name!r} takes no options {sorted(kwargs)}")
    if name == "digits":
        x, y = _digits_arrays()
        # digits ships as one pool: a fixed stratified 20% is the test split
        x_tr, y_tr, x_te, y_te = _stratified_split(x, y, 0.2, seed=12345)
    elif name == "mnist1d":
        x_tr, y_tr, x_te, y_te = mnist1d_arrays()
    else:
        x_tr, y_tr, x_te, y_te = _vision_arrays(name, root)
    x_tr, y_tr, x_va, y_va = _stratified_split(x_tr, y_tr, val_fraction, seed=split_seed)
    return Splits(name, *(_tensor(a) for a in (x_tr, y_tr, x_va, y_va, x_te, y_te)),
                  num_classes=10)


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def _stratified_split(x, y, fraction, seed):
    """Hold out ``fraction`` of every class (at least one sample each) with a seeded permutation."""
    rng = np.random.default_rng(seed)
    held = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        held.append(idx[: max(1, int(round(fraction * len(idx))))])
    held = np.sort(np.concatenate(held))
    keep = np.setdiff1d(np.arange(len(y)), held)
    return x[keep], y[keep], x[held], y[held]


def _digits_arrays():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None, :, :]  # (N, 1, 8, 8) in [0, 1]
    return x, d.target.astype(np.int64)


MNIST1D_CACHE_VERSION = 1


def mnist1d_arrays(cache_dir: str | None = None):
    """MNIST-1D's (x_train, y_train, x_test, y_test) as the package generates them, (N, 1, 40).

    Generated with ``mnist1d.data.make_dataset(get_dataset_args())`` (seed 42, the package's
    defaults), never ``get_dataset``, which downloads or writes a pickle into the working
    directory. Generation reseeds Python's and NumPy's global RNGs, so both are restored after.
    The arrays are cached as an .npz under ``cache_dir`` (``$TUNE_EXT_CACHE``, else
    ``~/.cache/tune-ext``) so a trial loads them in milliseconds instead of generating them (and
    importing matplotlib and scipy) for seconds; the file is written atomically, so concurrent
    trials never read half of it.
    """
    cache_dir = cache_dir or os.environ.get("TUNE_EXT_CACHE",
                                            os.path.join(os.path.expanduser("~"), ".cache", "tune-ext"))
    path = os.path.join(cache_dir, f"mnist1d-v{MNIST1D_CACHE_VERSION}.npz")
    try:
        with np.load(path) as f:
            return f["x_train"], f["y_train"], f["x_test"], f["y_test"]
    except (OSError, KeyError, ValueError):
        pass  # missing or unreadable: generate again
    arrays = _generate_mnist1d()
    os.makedirs(cache_dir, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp.npz"
    np.savez(tmp, **dict(zip(("x_train", "y_train", "x_test", "y_test"), arrays)))
    os.replace(tmp, path)
    return arrays


def _generate_mnist1d():
    import random

    os.environ.setdefault("MPLBACKEND", "Agg")  # mnist1d imports pyplot
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as exc:
        raise ImportError("dataset 'mnist1d' needs the mnist1d package: pip install mnist1d") from exc
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        d = make_dataset(get_dataset_args())
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    x = [np.asarray(d[k], dtype=np.float32)[:, None, :] for k in ("x", "x_test")]
    y = [np.asarray(d[k], dtype=np.int64) for k in ("y", "y_test")]
    return x[0], y[0], x[1], y[1]


def _synthetic(n_train: int = 512, n_val: int = 128, n_test: int = 256, n_features: int = 16,
               n_classes: int = 4, seed: int = 0, noise: float = 1.0) -> Splits:
    """Gaussian class clusters around random centres: learnable, but not trivially."""
    for key, value in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test),
                       ("n_features", n_features)):
        if int(value) < 1:
            raise ValueError(f"{key} must be >= 1, got {value}")
    if n_classes < 2:
        raise ValueError(f"n_classes must be >= 2, got {n_classes}")
    gen = torch.Generator().manual_seed(seed)
    centres = 2.0 * torch.randn(n_classes, n_features, generator=gen)

    def draw(n):
        y = torch.randint(0, n_classes, (n,), generator=gen)
        x = centres[y] + noise * torch.randn(n, n_features, generator=gen)
        return x.float(), y

    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = draw(n_train), draw(n_val), draw(n_test)
    return Splits("synthetic", x_tr, y_tr, x_va, y_va, x_te, y_te, num_classes=n_classes)


_VISION_HINT = {
    "mnist": "torchvision.datasets.MNIST(root, download=True)",
    "svhn": "torchvision.datasets.SVHN(root, split=..., download=True) for 'train' and 'test'",
    "cifar10": "torchvision.datasets.CIFAR10(root, download=True)",
}
# per-channel statistics of the training sets, as commonly used
_VISION_STATS = {
    "mnist": ((0.1307,), (0.3081,)),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}


def _vision_arrays(name, root):
    """Load a torchvision dataset that is already on disk; never downloads, never substitutes."""
    try:
        import torchvision.datasets as tvd
    except ImportError as exc:
        raise ImportError(
            f"dataset {name!r} needs torchvision: pip install 'tune-ext[vision]' "
            f"(or use dataset='digits', which ships with scikit-learn)") from exc
    root = root or os.environ.get("TUNE_EXT_DATA", os.path.expanduser("~/data"))
    try:
        if name == "svhn":
            train, test = (tvd.SVHN(root, split=s, download=False) for s in ("train", "test"))
            xs = [d.data.astype(np.float32) / 255.0 for d in (train, test)]
            ys = [np.asarray(d.labels, dtype=np.int64) for d in (train, test)]
        else:
            cls = tvd.MNIST if name == "mnist" else tvd.CIFAR10
            train, test = cls(root, train=True, download=False), cls(root, train=False, download=False)
            xs, ys = [], []
            for d in (train, test):
                data = np.asarray(d.data, dtype=np.float32) / 255.0
                data = data[:, None] if data.ndim == 3 else data.transpose(0, 3, 1, 2)
                xs.append(data)
                ys.append(np.asarray(d.targets, dtype=np.int64))
    except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted"
        raise FileNotFoundError(
            f"dataset {name!r} was not found under {root!r}: download it once with "
            f"{_VISION_HINT[name]}, then pass root= (or set TUNE_EXT_DATA)") from exc
    mean, std = (np.asarray(v, dtype=np.float32)[None, :, None, None] for v in _VISION_STATS[name])
    (x_tr, x_te), (y_tr, y_te) = [(a - mean) / std for a in xs], ys
    return x_tr, y_tr, x_te, y_te
