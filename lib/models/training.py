"""Training the ResNet-18 property regressors: one loop for CPU and CUDA (SPEC B3).

* Labels are min-max normalized to [0, 1] with the training split's extremes
  (:class:`MinMaxScaler`, exact round trip), which is the scale of the paper's test losses.
* Samples are split 80/20 into train/test by a seed (:func:`split_indices`); a validation part
  of the *training* split drives early stopping, so the test split is never looked at.
* Adam, MSE loss, learning rate decreased every epoch by a factor ``lr_gamma``
  (the paper's "decreased by epochs"), best-validation weights kept.
* Augmentation (optional) uses only symmetries that leave the *periodic* FE labels exactly
  unchanged: periodic shifts (``torch.roll``) and mirror flips of the image. (A transpose
  would swap X and Y and is not used.)
* Same seed, same numbers: the split, the initial weights, the batch order and the
  augmentation are all drawn from generators seeded by the recipe's seed.

The three benchmark cases of the paper (Table 2) are :data:`CASES`; the training recipe per
profile is :data:`RECIPES` (the one place; see :func:`get_recipe`). Trained weights are a stage
of :mod:`lib.stages` (:func:`trained_case`), keyed by the recipe, the case and the upstream
database and label stages.
"""
from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm  # text bars: they read right in a saved notebook too

from lib.models.regressor import GRADRAM_LAYERS, STEMS, build_regressor, images_to_tensor

__all__ = [
    "PropertyCase",
    "CASES",
    "PAPER_TABLE2",
    "Recipe",
    "RECIPES",
    "STEM_STUDY",
    "get_recipe",
    "MinMaxScaler",
    "split_indices",
    "default_device",
    "augment_periodic",
    "train_regressor",
    "predict",
    "regression_metrics",
    "TrainedCase",
    "trained_case",
    "random_subset",
    "fit_case",
    "case_targets",
    "load_trained_case",
    "accuracy_table",
    "format_accuracy_table",
    "TrainedProperty",
    "property_regressor",
    "state_arrays",
    "load_state",
]

TRAINING_VERSION = 1


# --------------------------------------------------------------------------------------------
# the three benchmark cases (paper Table 2)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PropertyCase:
    """One benchmark case: two directional outputs (X, Y) of one material pair.

    ``goal`` is ``"max"`` (Cases 1-2: stiffer / larger Poisson's ratio is better) or ``"min"``
    (Case 3: lower thermal expansion is better); Grad-RAM explains ``explain_sign * output``
    so that "positive" always means "towards the goal".
    """

    name: str
    title: str
    label_keys: tuple[str, str]
    short: tuple[str, str]
    goal: str
    paper_epochs: int
    paper_models: tuple[int, int]
    paper_test_loss: tuple[float, float]
    paper_r2: tuple[float, float]
    unit: str
    display_scale: float

    @property
    def explain_sign(self) -> float:
        return 1.0 if self.goal == "max" else -1.0

    @property
    def material(self) -> str:
        """The material case of the labels (``lib.fe.homogenization.MATERIAL_CASES`` key).

        >>> CASES["case2"].material
        'boron_aluminium'
        """
        return self.label_keys[0][:-len(self.short[0]) - 1]


CASES: dict[str, PropertyCase] = {
    "case1": PropertyCase("case1", "Case 1: Young's moduli (boron / aluminium)",
                          ("boron_aluminium_Ex", "boron_aluminium_Ey"), ("Ex", "Ey"), "max",
                          100, (1, 2), (0.0003, 0.0002), (0.9711, 0.9591), "GPa", 1e-3),
    "case2": PropertyCase("case2", "Case 2: Poisson's ratios (boron / aluminium)",
                          ("boron_aluminium_nu_xy", "boron_aluminium_nu_yx"),
                          ("nu_xy", "nu_yx"), "max", 50, (3, 4), (0.0007, 0.0007),
                          (0.9270, 0.9124), "", 1.0),
    "case3": PropertyCase("case3", "Case 3: thermal expansion (aluminium / foam)",
                          ("aluminium_foam_alpha_x", "aluminium_foam_alpha_y"),
                          ("alpha_x", "alpha_y"), "min", 50, (5, 6), (0.0005, 0.0003),
                          (0.8653, 0.9373), "1e-6/K", 1e6),
}

#: The paper's Table 2, by output: (model number, test loss, R^2).
PAPER_TABLE2 = {short: (case.paper_models[j], case.paper_test_loss[j], case.paper_r2[j])
                for case in CASES.values() for j, short in enumerate(case.short)}


# --------------------------------------------------------------------------------------------
# recipes: one per profile
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Recipe:
    """How the regressors of one profile are trained and explained.

    grouping: ``"per_output"`` (the paper: six single-output models) or ``"per_case"`` (one
        two-output model per case, half the training cost).
    epochs: maximum epochs per case (``case name -> epochs``).
    lr, lr_gamma: Adam's initial learning rate and its per-epoch decay factor.
    val_fraction: part of the training split held out for early stopping (0: none, the
        last epoch's weights are kept).
    patience: epochs without a better validation loss before stopping (``None``: never).
    augment: random periodic shifts and mirror flips (exactly label-preserving).
    amp: bfloat16 autocast on CUDA (ignored on the CPU, where it is slower here).
    stem, gradram_layer: network variant and the stage Grad-RAM explains
        (:mod:`lib.models.regressor`).
    gradram_shift_average: Grad-RAM maps averaged over this many periodic shifts per axis
        (:func:`lib.explain.gradram.gradram_maps`; 1: one pass, as in the paper).
    periodic: circular instead of zero padding in every convolution (the images and labels
        are periodic; see :func:`lib.models.regressor.build_regressor`).
    zero_init_residual: every residual block starts as the identity (torchvision's option);
        with circular padding this removes a large first-epoch transient and raised test R^2
        from 0.80-0.85 to 0.91-0.94 at 2,000 samples and 12 epochs (Cases 2-3).
    """

    stem: str
    gradram_layer: str
    grouping: str
    epochs: Mapping[str, int]
    periodic: bool = True
    zero_init_residual: bool = True
    batch_size: int = 32
    lr: float = 1e-3
    lr_gamma: float = 0.95
    weight_decay: float = 0.0
    val_fraction: float = 0.1
    patience: int | None = None
    augment: bool = True
    amp: bool = True
    test_fraction: float = 0.2
    seed: int = 2024
    gradram_shift_average: int = 1
    note: str = ""

    def __post_init__(self) -> None:
        if self.stem not in STEMS:
            raise ValueError(f"unknown stem {self.stem!r}: choose one of {', '.join(STEMS)}")
        if self.gradram_layer not in GRADRAM_LAYERS:
            raise ValueError(f"unknown Grad-RAM layer {self.gradram_layer!r}")
        if self.grouping not in ("per_output", "per_case"):
            raise ValueError(f"grouping must be 'per_output' or 'per_case', got {self.grouping!r}")
        if set(self.epochs) != set(CASES) or min(self.epochs.values()) < 1:
            raise ValueError(f"epochs must give a positive count for each of {sorted(CASES)}")
        if not 0.0 < self.test_fraction < 1.0 or not 0.0 <= self.val_fraction < 1.0:
            raise ValueError("test_fraction must lie in (0, 1) and val_fraction in [0, 1)")
        if isinstance(self.gradram_shift_average, bool) or self.gradram_shift_average < 1:
            raise ValueError("gradram_shift_average must be a positive integer")

    def training_params(self) -> dict[str, Any]:
        """The fields that change trained weights (the stage key), not the explanation ones."""
        out = dataclasses.asdict(self)
        out["epochs"] = dict(self.epochs)
        for name in ("gradram_layer", "gradram_shift_average", "note"):
            out.pop(name)
        return out


RECIPES: dict[str, Recipe] = {
    # every code path in seconds; the numbers mean nothing at 64 samples
    "smoke": Recipe(stem="standard", gradram_layer="layer4", grouping="per_case",
                    epochs={"case1": 3, "case2": 2, "case3": 2}, batch_size=16, lr=1e-3,
                    lr_gamma=0.8, val_fraction=0.2, patience=2, gradram_shift_average=2,
                    note="tiny: exercises every code path"),
    # CPU budget, all three cases in <= 30 min on 2 cores: 4,000 samples -> 2,880 train +
    # 288 validation images; ~16 ms per training image (circular padding, 2 threads, forward +
    # backward + validation) -> ~47 s per epoch, x 10 epochs x 3 cases ~ 24 min. Three
    # two-output models instead of six single-output ones (half the cost), early stopping.
    "default": Recipe(stem="standard", gradram_layer="layer4", grouping="per_case",
                      epochs={"case1": 10, "case2": 10, "case3": 10}, batch_size=32, lr=1e-3,
                      lr_gamma=0.8, val_fraction=0.1, patience=4, gradram_shift_average=4,
                      note="CPU budget: one two-output model per case, <= 10 epochs, "
                           "early stopping on 10 % of the training split"),
    # the paper's recipe (Table 1) for a GPU: six single-output models, Adam, batch 32,
    # 100 / 50 / 50 epochs, lr decreasing every epoch, trained on the whole 80 % split;
    # the finest stem (16 x 16 last maps, ~16-23x the standard stem's compute)
    "paper": Recipe(stem="stride1", gradram_layer="layer4", grouping="per_output",
                    epochs={"case1": 100, "case2": 50, "case3": 50}, batch_size=32, lr=1e-3,
                    lr_gamma=0.95, val_fraction=0.0, patience=None, gradram_shift_average=4,
                    note="paper Table 1: six single-output models, 100/50/50 epochs, "
                         "trained on the whole 80 % split, last epoch kept"),
}

#: The network comparison of notebook 06 per profile: Case 1 on a random subset of
#: ``n_samples`` of the database, ``epochs`` each, for these ``(stem, periodic)`` variants
#: (Grad-RAM on layer4 of each, and on layer3 of the first).
STEM_STUDY: dict[str, dict[str, Any]] = {
    "smoke": {"n_samples": 32, "epochs": 1,
              "variants": (("standard", True), ("standard", False), ("no_maxpool", True),
                           ("stride1", True))},
    "default": {"n_samples": 800, "epochs": 8,
                "variants": (("standard", True), ("standard", False), ("no_maxpool", True))},
    "paper": {"n_samples": 4000, "epochs": 30,
              "variants": (("standard", True), ("standard", False), ("no_maxpool", True),
                           ("stride1", True))},
}


def get_recipe(profile: str, **overrides: Any) -> Recipe:
    """The training recipe of ``profile``, optionally with fields overridden.

    >>> get_recipe("paper").grouping
    'per_output'
    >>> get_recipe("smoke", stem="no_maxpool").stem
    'no_maxpool'
    """
    from lib.profiles import get_profile

    name = getattr(profile, "name", profile)
    if name not in RECIPES:
        raise ValueError(f"no training recipe for profile {name!r}: choose one of "
                         f"{', '.join(RECIPES)}")
    recipe = RECIPES[name]
    seed = getattr(profile, "seed", None) or get_profile(name).seed
    if recipe.seed != seed:  # the profile's master seed decides
        recipe = dataclasses.replace(recipe, seed=seed)
    unknown = set(overrides) - {f.name for f in dataclasses.fields(Recipe)}
    if unknown:
        raise ValueError(f"unknown recipe field(s) {sorted(unknown)}")
    return dataclasses.replace(recipe, **overrides) if overrides else recipe


# --------------------------------------------------------------------------------------------
# labels and splits
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MinMaxScaler:
    """Min-max normalization of label columns to [0, 1]: ``(y - lo) / (hi - lo)``.

    >>> s = MinMaxScaler.fit(np.array([[1.0, 10.0], [3.0, 30.0]]))
    >>> s.transform(np.array([[2.0, 20.0]]))
    array([[0.5, 0.5]])
    >>> s.inverse_transform(s.transform(np.array([[2.5, 12.0]])))
    array([[ 2.5, 12. ]])
    """

    lo: np.ndarray
    hi: np.ndarray

    @classmethod
    def fit(cls, y: np.ndarray) -> "MinMaxScaler":
        y = _check_labels(y)
        lo, hi = y.min(axis=0), y.max(axis=0)
        if np.any(hi <= lo):
            raise ValueError(f"label column(s) {np.nonzero(hi <= lo)[0].tolist()} are constant: "
                             f"min-max normalization needs a spread")
        return cls(lo.astype(np.float64), hi.astype(np.float64))

    def transform(self, y: np.ndarray) -> np.ndarray:
        y = _check_labels(y, len(self.lo))
        return (y - self.lo) / (self.hi - self.lo)

    def inverse_transform(self, z: np.ndarray) -> np.ndarray:
        z = _check_labels(z, len(self.lo))
        return z * (self.hi - self.lo) + self.lo


def _check_labels(y: Any, n_cols: int | None = None) -> np.ndarray:
    """``y`` as a float (n, k) array; ValueError for NaN/inf or a wrong shape."""
    arr = np.asarray(y, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ValueError(f"labels must have shape (n,) or (n, k) with n >= 1, got {np.shape(y)}")
    if n_cols is not None and arr.shape[1] != n_cols:
        raise ValueError(f"labels have {arr.shape[1]} column(s), the scaler was fitted on {n_cols}")
    if not np.isfinite(arr).all():
        raise ValueError(f"labels contain NaN or inf ({int((~np.isfinite(arr)).sum())} values)")
    return arr


def split_indices(n: int, seed: int, test_fraction: float = 0.2,
                  val_fraction: float = 0.0) -> dict[str, np.ndarray]:
    """Random train / val / test indices of ``n`` samples (sorted within each part).

    ``test_fraction`` of all samples is the test split (the paper's 80/20);
    ``val_fraction`` of the remaining *training* split is held out for early stopping.

    >>> parts = split_indices(10, seed=0)
    >>> [len(parts[k]) for k in ("train", "val", "test")]
    [8, 0, 2]
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"need at least 2 samples to split, got n={n!r}")
    perm = np.random.default_rng(np.random.SeedSequence([int(seed), 11])).permutation(int(n))
    n_test = min(max(1, int(round(test_fraction * n))), n - 1)
    test, rest = perm[:n_test], perm[n_test:]
    n_val = int(round(val_fraction * len(rest))) if val_fraction > 0 else 0
    n_val = min(max(n_val, 1 if val_fraction > 0 else 0), len(rest) - 1)
    val, train = rest[:n_val], rest[n_val:]
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


# --------------------------------------------------------------------------------------------
# the training loop
# --------------------------------------------------------------------------------------------
def default_device() -> torch.device:
    """CUDA when there is a GPU, the CPU otherwise."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _batches(images: np.ndarray, idx: np.ndarray, batch_size: int, device: torch.device,
             channels_last: bool) -> Any:
    """Yield float image batches ``(b, 1, N, N)`` on ``device`` for the indices ``idx``."""
    for start in range(0, len(idx), batch_size):
        sel = idx[start:start + batch_size]
        x = torch.from_numpy(images[sel].astype(np.float32)).unsqueeze(1).to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        yield sel, x


def augment_periodic(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random periodic shift and mirror flips per image ``(B, C, N, N)``: periodic labels do not
    change (used by the regressors and the VQ-VAE)."""
    n, _, h, w = x.shape
    shifts = torch.randint(0, h, (n, 2), generator=gen)
    flips = torch.randint(0, 2, (n, 2), generator=gen).bool()
    out = []
    for i in range(n):
        xi = torch.roll(x[i], shifts=(int(shifts[i, 0]), int(shifts[i, 1])), dims=(1, 2))
        if flips[i, 0]:
            xi = xi.flip(1)
        if flips[i, 1]:
            xi = xi.flip(2)
        out.append(xi)
    return torch.stack(out).contiguous(memory_format=torch.channels_last
                                       if x.is_contiguous(memory_format=torch.channels_last)
                                       else torch.contiguous_format)


def predict(model: nn.Module, images: Any, batch_size: int = 64,
            device: torch.device | str | None = None) -> np.ndarray:
    """Model outputs ``(n, n_outputs)`` (normalized label scale) for binary ``images``."""
    x_all = images_to_tensor(images, image_size=None)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    channels_last = device.type == "cpu" and not getattr(model, "periodic", False)
    model.eval()
    outs = []
    with torch.no_grad():
        for start in range(0, len(x_all), batch_size):
            x = x_all[start:start + batch_size].to(device)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            outs.append(model(x).float().cpu())
    return torch.cat(outs).numpy().astype(np.float64)


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, np.ndarray]:
    """Per column: mean squared error and coefficient of determination R^2.

    >>> m = regression_metrics(np.array([0.0, 1.0, 2.0]), np.array([0.0, 1.0, 2.0]))
    >>> float(m["mse"][0]), float(m["r2"][0])
    (0.0, 1.0)
    """
    t, p = _check_labels(y_true), _check_labels(y_pred)
    if t.shape != p.shape:
        raise ValueError(f"y_true {t.shape} and y_pred {p.shape} differ in shape")
    mse = ((t - p) ** 2).mean(axis=0)
    var = ((t - t.mean(axis=0)) ** 2).mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(var > 0, 1.0 - mse / np.where(var > 0, var, 1.0), np.nan)
    return {"mse": mse, "r2": r2}


def train_regressor(images: np.ndarray, targets: np.ndarray, train_idx: np.ndarray,
                    val_idx: np.ndarray, recipe: Recipe, epochs: int, seed: int | None = None,
                    device: torch.device | str | None = None, progress: bool = True,
                    desc: str = "train") -> tuple[nn.Module, dict[str, Any]]:
    """Train one regressor on ``targets`` (``(n, k)``, already normalized) and return it.

    ``images`` ``(n, N, N)`` binary; ``train_idx`` / ``val_idx`` index both arrays (an empty
    ``val_idx`` disables early stopping). Returns the model (best validation weights, in eval
    mode, on ``device``) and a history dict with per-epoch ``train_loss``, ``val_loss``,
    ``lr``, ``seconds`` and the chosen ``best_epoch`` (1-based).
    """
    images_to_tensor(images[:1], image_size=None)  # shape / binary check, cheap
    imgs = np.asarray(images)
    y = _check_labels(targets)
    if len(y) != len(imgs):
        raise ValueError(f"{len(imgs)} images but {len(y)} label rows")
    train_idx, val_idx = np.asarray(train_idx, dtype=np.int64), np.asarray(val_idx, dtype=np.int64)
    if len(train_idx) == 0:
        raise ValueError("train_idx is empty")
    if not np.isin(imgs[train_idx], (0, 1)).all():
        raise ValueError("images must be binary (0 = black, 1 = white phase)")
    seed = recipe.seed if seed is None else int(seed)
    device = torch.device(device) if device is not None else default_device()
    # channels-last is faster on the CPU (oneDNN) with zero padding, slower with circular
    # padding, whose explicit pad copies come back in NCHW (bench/resnet.py)
    channels_last = device.type == "cpu" and not recipe.periodic
    use_amp = bool(recipe.amp) and device.type == "cuda"
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    torch.manual_seed(seed)
    model = build_regressor(y.shape[1], recipe.stem, seed=seed, periodic=recipe.periodic,
                            zero_init_residual=recipe.zero_init_residual).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=recipe.lr_gamma)
    gen = torch.Generator().manual_seed(seed)
    y_t = torch.from_numpy(y.astype(np.float32))
    loss_fn = nn.MSELoss()

    history: dict[str, Any] = {"train_loss": [], "val_loss": [], "lr": [], "seconds": []}
    best, best_state, bad = np.inf, None, 0
    bar = tqdm(range(epochs), desc=desc, unit="epoch", disable=not progress, leave=False)
    for epoch in bar:
        t0 = time.perf_counter()
        model.train()
        order = train_idx[torch.randperm(len(train_idx), generator=gen).numpy()]
        total, count = 0.0, 0
        for sel, x in _batches(imgs, order, recipe.batch_size, device, channels_last):
            if len(sel) < 2:  # BatchNorm needs two samples
                continue
            if recipe.augment:
                x = augment_periodic(x, gen)
            target = y_t[sel].to(device)
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                out = model(x)
            loss = loss_fn(out.float(), target)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(sel)
            count += len(sel)
        history["lr"].append(opt.param_groups[0]["lr"])
        sched.step()
        history["train_loss"].append(total / max(count, 1))
        if len(val_idx):
            val_loss = float(((predict(model, imgs[val_idx], device=device) - y[val_idx]) ** 2)
                             .mean())
        else:
            val_loss = float("nan")
        history["val_loss"].append(val_loss)
        history["seconds"].append(time.perf_counter() - t0)
        bar.set_postfix(train=f"{history['train_loss'][-1]:.4f}", val=f"{val_loss:.4f}")
        score = val_loss if len(val_idx) else -epoch  # no validation: keep the last epoch
        if score < best:
            best, bad = score, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            history["best_epoch"] = epoch + 1
        else:
            bad += 1
            if recipe.patience is not None and bad >= recipe.patience:
                break
    bar.close()
    if best_state is None:
        raise RuntimeError(f"{desc}: training diverged (validation loss {history['val_loss']}); "
                           f"lower the learning rate (recipe.lr = {recipe.lr})")
    model.load_state_dict(best_state)
    model.eval()
    return model, history


# --------------------------------------------------------------------------------------------
# weights <-> stage arrays
# --------------------------------------------------------------------------------------------
def state_arrays(model: nn.Module, prefix: str = "w.") -> dict[str, np.ndarray]:
    """A model's ``state_dict`` as numpy arrays named ``prefix + parameter name``."""
    return {prefix + k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def load_state(model: nn.Module, arrays: Mapping[str, np.ndarray], prefix: str = "w.") -> None:
    """Load :func:`state_arrays` output back into ``model`` (exact)."""
    state = {k[len(prefix):]: torch.from_numpy(np.asarray(v)) for k, v in arrays.items()
             if k.startswith(prefix)}
    model.load_state_dict(state)


def _stored_regressor(arrays: Mapping[str, np.ndarray], prefix: str, n_outputs: int,
                      recipe: Recipe, device: torch.device | str | None) -> nn.Module:
    """A regressor of ``recipe``'s architecture with the weights stored under ``prefix``, in
    eval mode on ``device`` (channels-last on the CPU for zero padding, as trained)."""
    device = torch.device(device) if device is not None else default_device()
    model = build_regressor(n_outputs, recipe.stem, periodic=recipe.periodic)
    load_state(model, arrays, prefix)
    model.to(device).eval()
    if device.type == "cpu" and not recipe.periodic:
        model = model.to(memory_format=torch.channels_last)
    return model


# --------------------------------------------------------------------------------------------
# trained cases as cached stages
# --------------------------------------------------------------------------------------------
@dataclass
class TrainedCase:
    """The regressor(s) of one case: predictions in physical units, Grad-RAM model handles.

    ``models[m]`` predicts the case outputs ``outputs_of[m]`` (indices into ``case.short``),
    so a per-case recipe has one model with ``(0, 1)`` and the paper's recipe two with
    ``(0,)`` and ``(1,)``.
    """

    case: PropertyCase
    recipe: Recipe
    models: list[nn.Module]
    outputs_of: list[tuple[int, ...]]
    scaler: MinMaxScaler
    split: dict[str, np.ndarray]
    history: list[dict[str, Any]]
    train_seconds: float
    path: Path | None = None
    test_pred_normalized: np.ndarray | None = field(default=None, repr=False)
    subset: np.ndarray | None = field(default=None, repr=False)

    def database_indices(self, part: str = "test") -> np.ndarray:
        """Database rows of split ``part`` (``"train"``, ``"val"`` or ``"test"``)."""
        idx = self.split[part]
        return idx if self.subset is None else self.subset[idx]

    def database_sample(self, part: str, n: int | None, seed: int = 0) -> np.ndarray:
        """``n`` database rows of split ``part`` drawn at random (``seed``), in drawn order.

        The splits are sorted and the database is ordered by category, so the *first* rows of
        a split are one category; a probe or reference set must be drawn like this instead.
        ``n=None`` (or more than the split holds) gives the whole split, shuffled.
        """
        rows = self.database_indices(part)
        if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1):
            raise ValueError(f"n must be a positive integer or None, got {n!r}")
        rng = np.random.default_rng(np.random.SeedSequence([int(self.recipe.seed), int(seed), 23]))
        order = rng.permutation(len(rows))
        return rows[order if n is None else order[:int(n)]]

    def model_for(self, output: int) -> tuple[nn.Module, int]:
        """``(model, output index in that model)`` for case output 0 (X) or 1 (Y)."""
        for model, outs in zip(self.models, self.outputs_of):
            if output in outs:
                return model, outs.index(output)
        raise ValueError(f"case output must be 0 (X) or 1 (Y), got {output!r}")

    def predict_normalized(self, images: Any, batch_size: int = 64) -> np.ndarray:
        """``(n, 2)`` predictions on the [0, 1] label scale."""
        out = None
        for model, outs in zip(self.models, self.outputs_of):
            p = predict(model, images, batch_size)
            out = np.empty((len(p), 2)) if out is None else out
            out[:, list(outs)] = p
        return out

    def predict(self, images: Any, batch_size: int = 64) -> np.ndarray:
        """``(n, 2)`` predictions in the labels' units (MPa, 1, 1/K)."""
        return self.scaler.inverse_transform(self.predict_normalized(images, batch_size))


def _model_groups(recipe: Recipe) -> list[tuple[int, ...]]:
    return [(0,), (1,)] if recipe.grouping == "per_output" else [(0, 1)]


def case_targets(labels: Mapping[str, np.ndarray], case: PropertyCase | str) -> np.ndarray:
    """``(n, 2)`` raw labels (X, Y) of ``case`` from a label-stage dict; clear error if missing."""
    case = CASES[case] if isinstance(case, str) else case
    missing = [k for k in case.label_keys if k not in labels]
    if missing:
        raise ValueError(f"labels lack {missing} for {case.name}: run the homogenization "
                         f"labels stage (notebook 03) with all material cases")
    return _check_labels(np.stack([np.asarray(labels[k], dtype=np.float64)
                                   for k in case.label_keys], axis=1))


def fit_case(images: np.ndarray, labels: Mapping[str, np.ndarray], case: PropertyCase | str,
             recipe: Recipe, device: torch.device | str | None = None,
             progress: bool = True, subset: np.ndarray | None = None) -> TrainedCase:
    """Train the model(s) of ``case`` by ``recipe`` (no caching; see :func:`trained_case`).

    ``subset``: database indices to use (all samples if ``None``); the split indexes the subset.
    """
    case = CASES[case] if isinstance(case, str) else case
    raw = case_targets(labels, case)
    if len(raw) != len(images):
        raise ValueError(f"{len(images)} images but {len(raw)} label rows")
    subset = np.arange(len(raw)) if subset is None else np.asarray(subset, dtype=np.int64)
    images, raw = np.asarray(images)[subset], raw[subset]
    split = split_indices(len(raw), recipe.seed, recipe.test_fraction, recipe.val_fraction)
    scaler = MinMaxScaler.fit(raw[np.concatenate([split["train"], split["val"]])])
    y = scaler.transform(raw)
    models, histories, groups = [], [], _model_groups(recipe)
    t0 = time.perf_counter()
    for g, outs in enumerate(groups):
        name = "+".join(case.short[o] for o in outs)
        model, hist = train_regressor(images, y[:, list(outs)], split["train"], split["val"],
                                      recipe, recipe.epochs[case.name], seed=recipe.seed + g,
                                      device=device, progress=progress,
                                      desc=f"{case.name} {name}")
        models.append(model)
        histories.append(hist)
    result = TrainedCase(case, recipe, models, groups, scaler, split, histories,
                         time.perf_counter() - t0, subset=subset)
    result.test_pred_normalized = result.predict_normalized(images[split["test"]])
    return result


def random_subset(n: int, n_samples: int | None, seed: int) -> np.ndarray:
    """Sorted random ``n_samples`` of ``range(n)`` (all if ``None`` or ``>= n``), by ``seed``.

    The database is ordered by category, so a subset must be drawn, never its first rows.
    """
    if n_samples is None or n_samples >= n:
        return np.arange(n)
    if n_samples < 4:
        raise ValueError(f"n_samples must be at least 4 (train / val / test), got {n_samples}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 12]))
    return np.sort(rng.permutation(n)[:n_samples])


def trained_case(profile: str, case: PropertyCase | str, database_path: Path | str,
                 labels_path: Path | str, recipe: Recipe | None = None,
                 n_samples: int | None = None, device: torch.device | str | None = None,
                 progress: bool = True, stage_name: str | None = None) -> TrainedCase:
    """Train (or load cached) the regressor(s) of ``case`` for ``profile``.

    Stage ``regressor_<case>`` (or ``stage_name``) in ``data/<profile>/``, keyed by the
    recipe's training fields, the case's label keys, ``n_samples`` (a random subset of the
    database, :func:`random_subset`; ``None`` = all) and the database and label stages
    (``upstream``). It stores each model's ``state_dict`` (datasets ``m<i>.<parameter
    name>``), the scaler, the subset and split, the training history and the test
    predictions, written atomically by :mod:`lib.stages`. Weights trained on a GPU load on a
    CPU and the other way round.
    """
    from lib.stages import cached_stage, load_stage, read_key

    case = CASES[case] if isinstance(case, str) else case
    recipe = get_recipe(profile) if recipe is None else recipe
    profile = getattr(profile, "name", profile)
    params = {"version": TRAINING_VERSION, "case": case.name, "labels": list(case.label_keys),
              "n_samples": n_samples, **recipe.training_params()}
    upstream = [read_key(database_path), read_key(labels_path)]
    trained: dict[str, TrainedCase] = {}

    def compute() -> dict[str, np.ndarray]:
        images = load_stage(database_path)["images"]
        labels = load_stage(labels_path)
        subset = random_subset(len(images), n_samples, recipe.seed)
        result = fit_case(images, labels, case, recipe, device=device, progress=progress,
                          subset=subset)
        trained["result"] = result
        arrays: dict[str, np.ndarray] = {
            "subset": subset,
            "scaler_lo": result.scaler.lo, "scaler_hi": result.scaler.hi,
            "test_pred_normalized": result.test_pred_normalized,
            "train_seconds": np.array(result.train_seconds),
            "history_json": np.array(json.dumps(result.history)),
            "device": np.array(str(next(result.models[0].parameters()).device)),
        }
        for part, idx in result.split.items():
            arrays[f"split_{part}"] = idx
        for m, model in enumerate(result.models):
            arrays |= state_arrays(model, f"m{m}.")
        return arrays

    path = cached_stage(profile, stage_name or f"regressor_{case.name}", params, compute,
                        upstream=upstream,
                        attrs={"stem": recipe.stem, "grouping": recipe.grouping})
    if "result" in trained:
        trained["result"].path = path
        return trained["result"]
    return load_trained_case(path, recipe, device=device)


def load_trained_case(path: Path | str, recipe: Recipe | None = None,
                      device: torch.device | str | None = None) -> TrainedCase:
    """Rebuild a :class:`TrainedCase` from a ``regressor_<case>`` stage file."""
    from lib.stages import load_stage, stage_attrs

    attrs = stage_attrs(path)
    params = attrs.get("params") or {}
    if "case" not in params or params["case"] not in CASES:
        raise ValueError(f"{path} is not a regressor stage of a Part B case (stage "
                         f"{attrs.get('stage')!r}; expected regressor_<case> written by "
                         f"train_case, with a 'case' among {sorted(CASES)} in its params)")
    case = CASES[params["case"]]
    if recipe is None:
        fields = {f.name for f in dataclasses.fields(Recipe)}
        recipe = Recipe(gradram_layer="layer4",
                        **{k: v for k, v in params.items() if k in fields})
    data = load_stage(path)
    groups = _model_groups(recipe)
    models = [_stored_regressor(data, f"m{m}.", len(outs), recipe, device)
              for m, outs in enumerate(groups)]
    split = {part: data[f"split_{part}"] for part in ("train", "val", "test")}
    return TrainedCase(case, recipe, models, groups,
                       MinMaxScaler(data["scaler_lo"], data["scaler_hi"]), split,
                       json.loads(str(data["history_json"])), float(data["train_seconds"]),
                       Path(path), data["test_pred_normalized"], data["subset"])


# --------------------------------------------------------------------------------------------
# the accuracy table beside the paper's Table 2
# --------------------------------------------------------------------------------------------
def accuracy_table(trained: Sequence[TrainedCase], labels: Mapping[str, np.ndarray]
                   ) -> list[dict[str, Any]]:
    """One row per output: test MSE on the [0, 1] scale and R^2, ours beside the paper's."""
    rows = []
    for tc in trained:
        raw = case_targets(labels, tc.case)[tc.database_indices("test")]
        true_n = tc.scaler.transform(raw)
        metrics = regression_metrics(true_n, tc.test_pred_normalized)
        for j, short in enumerate(tc.case.short):
            model_no, paper_loss, paper_r2 = PAPER_TABLE2[short]
            rows.append({"case": tc.case.name, "output": short, "paper_model": model_no,
                         "test_mse": float(metrics["mse"][j]), "r2": float(metrics["r2"][j]),
                         "paper_test_loss": paper_loss, "paper_r2": paper_r2,
                         "n_test": int(len(raw)), "train_seconds": tc.train_seconds})
    return rows


def format_accuracy_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown table of :func:`accuracy_table` rows."""
    lines = ["| case | output | paper model | test MSE (ours) | test loss (paper) | R² (ours) "
             "| R² (paper) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['output']} | {r['paper_model']} | {r['test_mse']:.4f} "
                     f"| {r['paper_test_loss']:.4f} | {r['r2']:.4f} | {r['paper_r2']:.4f} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# one property of another database (Part A's fracture strain), as a cached stage
# --------------------------------------------------------------------------------------------
@dataclass
class TrainedProperty:
    """A one-output regressor of a property other than the three cases (Part A's fracture
    strain): the model, its label scaler and the split it was trained on (indices into the
    images it was given)."""

    model: nn.Module
    scaler: MinMaxScaler
    split: dict[str, np.ndarray]
    history: dict[str, Any]
    train_seconds: float
    path: Path | None = None

    def predict(self, images: Any, batch_size: int = 64) -> np.ndarray:
        """``(n,)`` predictions in the label's units."""
        return self.scaler.inverse_transform(predict(self.model, images, batch_size))[:, 0]


def property_regressor(profile: str, name: str, images: np.ndarray, targets: np.ndarray,
                       split: Mapping[str, np.ndarray], upstream: Sequence[str],
                       recipe: Recipe | None = None, epochs: int | None = None,
                       description: Mapping[str, Any] | None = None,
                       device: torch.device | str | None = None,
                       progress: bool = True) -> TrainedProperty:
    """Train (or load the cached) ResNet-18 regressor of one property, by the profile's recipe.

    ``images (n, N, N)`` binary; ``targets (n,)`` raw labels (finite on the split's rows);
    ``split``: ``train`` / ``val`` / ``test`` index arrays into both (the caller's split, so
    another model can share it); ``upstream``: keys of the stages the images and labels come
    from. ``epochs`` defaults to the recipe's Case 1 epochs. The labels are min-max scaled
    with the train + val extremes; the loop, augmentation and early stopping are
    :func:`train_regressor`'s. Stage ``name``, keyed by the recipe's training fields, the
    epochs, the split and ``upstream``.
    """
    from lib.stages import cached_stage, load_stage

    recipe = get_recipe(profile) if recipe is None else recipe
    epochs = recipe.epochs["case1"] if epochs is None else int(epochs)
    y = np.asarray(targets, dtype=np.float64).reshape(-1)
    if len(y) != len(images):
        raise ValueError(f"{len(images)} images but {len(y)} targets")
    parts = {k: np.asarray(split[k], dtype=np.int64) for k in ("train", "val", "test")}
    used = np.concatenate(list(parts.values()))
    if len(used) and (used.min() < 0 or used.max() >= len(y)):
        raise ValueError(f"split indices must lie in [0, {len(y)})")
    scaler = MinMaxScaler.fit(y[np.concatenate([parts["train"], parts["val"]])])
    params = {"version": TRAINING_VERSION, "epochs": epochs, **recipe.training_params(),
              "split": {k: v.tolist() for k, v in parts.items()},
              "description": dict(description or {})}
    fresh: dict[str, TrainedProperty] = {}

    def compute() -> dict[str, np.ndarray]:
        z = np.zeros((len(y), 1))
        z[used, 0] = scaler.transform(y[used])[:, 0]
        t0 = time.perf_counter()
        model, hist = train_regressor(np.asarray(images), z, parts["train"], parts["val"], recipe,
                                      epochs, device=device, progress=progress, desc=name)
        fresh["result"] = TrainedProperty(model, scaler, parts, hist, time.perf_counter() - t0)
        arrays = {"scaler_lo": scaler.lo, "scaler_hi": scaler.hi,
                  "train_seconds": np.array(fresh["result"].train_seconds),
                  "history_json": np.array(json.dumps(hist))}
        return arrays | state_arrays(model, "m0.")

    path = cached_stage(profile, name, params, compute, upstream=list(upstream),
                        attrs={"stem": recipe.stem})
    if "result" in fresh:
        fresh["result"].path = path
        return fresh["result"]
    data = load_stage(path)
    model = _stored_regressor(data, "m0.", 1, recipe, device)
    return TrainedProperty(model, MinMaxScaler(data["scaler_lo"], data["scaler_hi"]), parts,
                           json.loads(str(data["history_json"])), float(data["train_seconds"]),
                           Path(path))
