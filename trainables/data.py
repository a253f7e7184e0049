"""Datasets as train / validation / test tensors: the built-in ones by name, or a user's own.

Every dataset, built-in or not, goes through ``as_splits``: the data as ``{"train": ..., "val":
..., "test": ...}`` where each part is a pair of tensors (or arrays) ``(inputs, targets)`` or a
map-style ``torch.utils.data.Dataset`` of ``(input, target)`` pairs. When no validation part is
given it is carved out of the training data, never out of the test split (Micaelli & Storkey 2021
stress this: validating on the test set flatters greedy methods). Built-in datasets are loaders
registered in ``DATASETS`` that return such a mapping; a new one is one ``register_dataset`` line.
"""
from __future__ import annotations

import functools
import inspect
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from trainables.registry import Registry

VISION_DATASETS = ("mnist", "svhn", "cifar10")
PARTS = ("train", "val", "test")
OPTIONAL = ("num_classes",)


@dataclass
class Splits:
    """Tensors of one dataset: inputs (N, ...) of a float dtype, targets (N,) or (N, ...).

    Integer targets are class labels (``num_classes`` = the largest label + 1, accuracy is
    reported); float targets are regression targets (``num_classes`` is None, no accuracy).
    ``x_test``/``y_test`` are None when the data has no test split.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor | None
    y_test: torch.Tensor | None
    num_classes: int | None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def classification(self) -> bool:
        return self.num_classes is not None

    def to(self, device) -> "Splits":
        moved = {k: None if getattr(self, k) is None else getattr(self, k).to(device) for k in
                 ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")}
        return Splits(name=self.name, num_classes=self.num_classes, **moved)


def as_splits(data, *, val_fraction: float = 0.1, split_seed: int = 0, name: str = "custom") -> Splits:
    """A dataset as ``Splits``: the one path for built-in and user data.

    data: a ``Splits`` (returned as is) or a mapping with ``"train"`` and optionally ``"val"`` and
        ``"test"``, each ``(inputs, targets)`` tensors/arrays or a map-style Dataset of pairs (and
        optionally ``"num_classes"`` when the labels do not show every class).
    val_fraction: share of the training data held out for validation when ``"val"`` is missing
        (stratified per class for integer targets, a seeded random subset otherwise).
    split_seed: seed of that hold-out.
    """
    if isinstance(data, Splits):
        return data
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if not hasattr(data, "keys") or "train" not in data:
        raise ValueError(f"data must be a mapping with a 'train' part (and optionally 'val' and "
                         f"'test'), each (inputs, targets) or a map-style Dataset; got {type(data).__name__}")
    unknown = sorted(set(data.keys()) - set(PARTS) - set(OPTIONAL))
    if unknown:
        from trainables.registry import did_you_mean
        raise ValueError(f"data has unknown part {unknown[0]!r}{did_you_mean(unknown[0], PARTS + OPTIONAL)} "
                         f"(parts are 'train', 'val', 'test', and 'num_classes' if not every class occurs)")
    parts = {k: _pair(data[k], k) for k in PARTS if data.get(k) is not None}
    x_tr, y_tr = parts["train"]
    if "val" in parts:
        x_va, y_va = parts["val"]
    else:
        keep, held = _holdout(y_tr, val_fraction, split_seed)
        x_tr, y_tr, x_va, y_va = x_tr[keep], y_tr[keep], x_tr[held], y_tr[held]
    x_te, y_te = parts.get("test", (None, None))
    labels = [y for y in (y_tr, y_va, y_te) if y is not None]
    integer = not (y_tr.is_floating_point() or y_tr.is_complex())
    if any((y.is_floating_point() or y.is_complex()) == integer for y in labels):
        raise ValueError("data targets must be all integer class labels or all float values")
    num_classes = None
    if integer:
        num_classes = max(int(data.get("num_classes") or 0), max(int(y.max()) for y in labels) + 1)
    return Splits(name, x_tr, y_tr, x_va, y_va, x_te, y_te, num_classes)


def _pair(part, key):
    """(inputs, targets) tensors from a pair of tensors/arrays or a map-style Dataset."""
    if isinstance(part, (tuple, list)) and len(part) == 2:
        x, y = (torch.as_tensor(np.ascontiguousarray(a)) if isinstance(a, np.ndarray) else torch.as_tensor(a)
                for a in part)
    elif hasattr(part, "__getitem__") and hasattr(part, "__len__"):
        items = [part[i] for i in range(len(part))]
        if not items or len(items[0]) != 2:
            raise ValueError(f"data[{key!r}] must yield (input, target) pairs")
        x = torch.stack([torch.as_tensor(i[0]) for i in items])
        y = torch.stack([torch.as_tensor(i[1]) for i in items])
    else:
        raise ValueError(f"data[{key!r}] must be (inputs, targets) or a map-style Dataset, got "
                         f"{type(part).__name__}")
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"data[{key!r}] must have as many (>= 1) inputs as targets, got {len(x)} and {len(y)}")
    if not x.is_floating_point():
        x = x.float()
    return x, y


def _holdout(y: torch.Tensor, fraction: float, seed: int):
    """Indices (kept, held out): stratified per class for labels, a random subset for values."""
    if y.is_floating_point():
        order = np.random.default_rng(seed).permutation(len(y))
        n = max(1, int(round(fraction * len(y))))
        held, keep = np.sort(order[:n]), np.sort(order[n:])
    else:
        keep, held = _stratified_indices(y.numpy(), fraction, seed)
    if len(keep) == 0:
        raise ValueError(f"too little training data ({len(y)}) to hold out a validation split")
    return torch.as_tensor(keep), torch.as_tensor(held)


DATASETS = Registry("dataset")


def register_dataset(name: str, loader: Callable) -> Callable:
    """Make ``config["dataset"] = name`` load ``loader(root=..., **dataset_kwargs)``.

    loader: returns what ``as_splits`` takes (a mapping of parts, or ``Splits``); it may accept
        ``root`` (where data lives on disk) and any options given as ``config["dataset_kwargs"]``.
    """
    return DATASETS.register(name, loader)


def load_dataset(name: str = "digits", *, root: str | None = None, val_fraction: float = 0.1,
                 split_seed: int = 0, **kwargs) -> Splits:
    """Return the train / validation / test splits of the registered dataset ``name``.

    name: one of ``DATASETS``. ``digits`` (scikit-learn's bundled 8x8 digits) needs nothing;
        ``mnist1d`` (Greydanus 2020, 4000 train / 1000 test signals of length 40) is generated
        locally by the ``mnist1d`` package and cached (``mnist1d_arrays``);
        ``synthetic`` is generated (kwargs: n_train, n_val, n_test, n_features, n_classes, seed);
        ``mnist``, ``svhn`` and ``cifar10`` need torchvision and the data already under ``root``.
    val_fraction: share of the training data held out for validation.
    split_seed: seed of the train/validation (and, for digits, test) split, fixed per task so
        every trial and method sees the same splits.
    """
    loader = DATASETS.lookup(name)
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    params = inspect.signature(loader).parameters
    takes_root = "root" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
    try:
        inspect.signature(loader).bind(**({"root": root} if takes_root else {}), **kwargs)
    except TypeError:
        raise ValueError(f"dataset {name!r} takes no options {sorted(kwargs)}") from None
    data = loader(**({"root": root} if takes_root else {}), **kwargs)
    return as_splits(data, val_fraction=val_fraction, split_seed=split_seed, name=name)


def load_digits() -> dict:
    """scikit-learn's bundled 8x8 digits as (N, 1, 8, 8) in [0, 1]; a fixed stratified 20% is test."""
    x, y = _digits_arrays()
    keep, held = _stratified_indices(y, 0.2, seed=12345)  # digits ships as one pool
    return {"train": (x[keep], y[keep]), "test": (x[held], y[held])}


def load_vision(name: str, root: str | None = None) -> dict:
    """A torchvision dataset already on disk (mnist, svhn, cifar10), normalised per channel."""
    x_tr, y_tr, x_te, y_te = _vision_arrays(name, root)
    return {"train": (x_tr, y_tr), "test": (x_te, y_te)}


def _stratified_indices(y, fraction, seed):
    """(kept, held) indices: ``fraction`` of every class (at least one sample each) held out with
    a seeded permutation."""
    rng = np.random.default_rng(seed)
    held = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        held.append(idx[: max(1, int(round(fraction * len(idx))))])
    held = np.sort(np.concatenate(held))
    return np.setdiff1d(np.arange(len(y)), held), held


def _digits_arrays():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None, :, :]  # (N, 1, 8, 8) in [0, 1]
    return x, d.target.astype(np.int64)


MNIST1D_CACHE_VERSION = 1


def tune_ext_cache_dir(*parts: str) -> str:
    """tune-ext's cache folder, ``$TUNE_EXT_CACHE`` (else ``~/.cache/tune-ext``), joined with
    ``parts``: generated data and compiled kernels that every process on the machine shares."""
    root = os.environ.get("TUNE_EXT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "tune-ext")
    return os.path.join(root, *parts)


def use_compile_cache() -> str:
    """Point ``torch.compile``'s on-disk caches at ``<tune-ext cache>/torchinductor`` and return it.

    TorchInductor keeps its compiled FX graphs and AOTAutograd entries under
    ``TORCHINDUCTOR_CACHE_DIR``; with every trial process of a node pointing there, the first one
    compiles and the others load what it wrote (a new graph shape still compiles once). A
    ``TORCHINDUCTOR_CACHE_DIR`` the user set is kept; torch's own default (a folder under /tmp,
    which torch writes into the variable as soon as anything imports ``torch._dynamo``) is not.
    """
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    current = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if current is None or os.path.abspath(current) == os.path.abspath(default_cache_dir()):
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tune_ext_cache_dir("torchinductor")
    return os.environ["TORCHINDUCTOR_CACHE_DIR"]


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
    cache_dir = cache_dir or tune_ext_cache_dir()
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


def load_mnist1d() -> dict:
    """MNIST-1D's package split (4,000 train / 1,000 test); validation is carved from train."""
    x_tr, y_tr, x_te, y_te = mnist1d_arrays()
    return {"train": (x_tr, y_tr), "test": (x_te, y_te), "num_classes": 10}


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


def load_synthetic(n_train: int = 512, n_val: int = 128, n_test: int = 256, n_features: int = 16,
                   n_classes: int = 4, seed: int = 0, noise: float = 1.0) -> dict:
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

    return {"train": draw(n_train), "val": draw(n_val), "test": draw(n_test), "num_classes": n_classes}


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


register_dataset("digits", load_digits)
register_dataset("mnist1d", load_mnist1d)
register_dataset("synthetic", load_synthetic)
for _name in VISION_DATASETS:
    register_dataset(_name, functools.partial(load_vision, _name))
