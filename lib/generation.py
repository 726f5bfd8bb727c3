"""Part A's generative half: data sets, conditional models, structures at a target (SPEC A3-A5).

* **The condition.** We condition on the strain at a 20 % drop of the mean stress below its
  peak (``load_drop_strain`` of the GTN labels, "elongation at break"), not on the mean-void
  label (f̄_crit): it spans about the paper's range of targets (0.05-0.9; laminates along x
  reach ~0.9) and ranks the structures like f̄_crit (Spearman 0.95, notebook 02), while
  f̄_crit spans only 0.011-0.143. The paper's targets are therefore taken as they are
  (identity mapping, the same for every data set), and the strength condition is the tensile
  strength (peak mean stress, MPa).
* **Normalization.** Both labels are min-max scaled with the extremes of the *training* part
  of the All data set (:class:`ConditionScale`), one scale for every data set, so a target
  means the same strain in every model; a data set whose structures never reach a target
  is asked to extrapolate (as in the paper's Fig. 4, where Random and Ellipse are asked for
  laminate-like strains).
* **Data sets** (SPEC A4): All (every labelled database structure), Random, Ellipse and
  Rectangle with 20-30 % martensite; the database holds only ~1/5 of its rectangles in that
  window, so :data:`EXTRA_RECTANGLE_STAGE` generates and labels more (same generator, same
  GTN pipeline). One random split per structure (70/10/20 train/val/test), shared by every
  data set and model. A structure whose labels are missing (failed FE run) is left out.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lib.fe.fracture_labels import fracture_labels
from lib.microstructures.dual_phase import (DUAL_PHASE_CATEGORIES, dual_phase_dataset,
                                            extra_dual_phase_dataset)
from lib.models.generative_training import (GenerativeRecipe, encode_mirrors,
                                            get_generative_recipe, load_pixelcnn, load_vqvae,
                                            pixelcnn_stage, vqvae_stage)
from lib.models.pixelcnn import GatedPixelCNN
from lib.models.training import split_indices
from lib.models.vqvae import VQVAE
from lib.profiles import Profile, get_profile
from lib.stages import cached_stage, load_stage, read_key

__all__ = ["DUAL_PHASE_CATEGORIES", "DATASETS", "MODEL_KINDS", "PAPER_TARGETS", "FIG5_TARGETS", "FIG5_STRENGTH",
           "RECTANGLE_WINDOW", "GenerationSizes", "get_generation_sizes", "LabelledPool",
           "ConditionScale", "GenerativeModels", "labelled_pool", "dataset_members",
           "generative_models", "pixelcnn_with_seed", "slider_view", "generated_stage"]

#: The data sets of the FS model (SPEC A4), in figure order.
DATASETS = ("All", "Random", "Ellipse", "Rectangle")
#: Model kinds: the fracture-strain model, the fracture-strain + strength model, and the
#: unconditional model each conditional one is compared with (held-out NLL).
MODEL_KINDS = ("fs", "fsts", "uncond")
#: The paper's target fracture strains per data set (Fig. 4), used as they are (module doc).
PAPER_TARGETS = {"All": (0.1, 0.3, 0.7, 0.9), "Random": (0.1, 0.3, 0.7, 0.9),
                 "Ellipse": (0.1, 0.3, 0.7, 0.9), "Rectangle": (0.05, 0.1, 0.2, 0.3)}
#: The FS+TS model's targets (Fig. 5) and its fixed tensile strength in MPa.
FIG5_TARGETS = (0.1, 0.3, 0.4, 0.5, 0.7, 0.9)
FIG5_STRENGTH = 700.0
#: Martensite window of the Rectangle data set.
RECTANGLE_WINDOW = (0.2, 0.3)
EXTRA_RECTANGLE_STAGE = "dual_phase_rectangle_extra"
UNLABELLED_STAGE = "dual_phase_unlabelled"
SPLIT_FRACTIONS = {"test": 0.2, "val": 0.125}  # of all, of the rest: 70/10/20


@dataclass(frozen=True)
class GenerationSizes:
    """How many structures the generative notebooks draw: ``n_per_target`` per data set and
    target (statistics, Fig. 4), ``n_fig5`` per target of the FS+TS model (Fig. 5b, the
    paper's 1,000), ``n_validation`` per target labelled by FE (notebook 05, the paper's 30)
    for the FS models of ``validation_datasets``."""

    n_per_target: int
    n_fig5: int
    n_validation: int
    validation_datasets: tuple[str, ...] = ("All", "Random", "Ellipse", "Rectangle")


_SIZES = {"smoke": GenerationSizes(8, 16, 2, ("All", "Rectangle")),
          "default": GenerationSizes(200, 1000, 30),
          "paper": GenerationSizes(1000, 1000, 30)}


def get_generation_sizes(profile: str | Profile) -> GenerationSizes:
    """The :class:`GenerationSizes` of a profile."""
    return _SIZES[getattr(profile, "name", profile)]


# --------------------------------------------------------------------------------------------
# labelled structures and data sets
# --------------------------------------------------------------------------------------------
@dataclass
class LabelledPool:
    """Every labelled structure the generative models can train on.

    ``images (n, N, N)`` uint8; ``category (n,)`` index into DUAL_PHASE_CATEGORIES;
    ``fraction (n,)`` martensite fraction; ``strain (n,)`` the condition (20 % load-drop
    strain); ``strength (n,)`` tensile strength in MPa; ``source (n,)`` 0 = database, 1 = extra
    rectangles; ``valid (n,)`` both labels finite; ``part (n,)`` 0/1/2 = train/val/test.
    """

    images: np.ndarray
    category: np.ndarray
    fraction: np.ndarray
    strain: np.ndarray
    strength: np.ndarray
    source: np.ndarray
    valid: np.ndarray
    part: np.ndarray

    def indices(self, members: np.ndarray, part: str) -> np.ndarray:
        """Indices of ``members`` in split ``part`` ("train", "val", "test")."""
        code = ("train", "val", "test").index(part)
        return members[self.part[members] == code]

    def member_split(self, members: np.ndarray) -> dict[str, np.ndarray]:
        """``{"train", "val", "test"}``: positions *within* ``members`` (sorted pool rows) of
        each part, the split a model trained on ``members`` alone uses."""
        return {p: np.searchsorted(members, self.indices(members, p)) for p in ("train", "val", "test")}


def _parts(n: int, seed: int) -> np.ndarray:
    part = np.zeros(n, dtype=np.int8)
    if n >= 3:
        s = split_indices(n, seed, SPLIT_FRACTIONS["test"], SPLIT_FRACTIONS["val"])
        part[s["val"]], part[s["test"]] = 1, 2
    return part


def labelled_pool(databases: Sequence[Mapping[str, np.ndarray]],
                  labels: Sequence[Mapping[str, np.ndarray]], seed: int) -> LabelledPool:
    """Concatenate structure stages and their GTN label stages into one :class:`LabelledPool`.

    ``databases[k]`` holds ``images``, ``category``, ``martensite_fraction``; ``labels[k]``
    ``load_drop_strain`` and ``tensile_strength`` (rows aligned). The split is drawn per
    source (seed, source index), over its valid structures.
    """
    if len(databases) != len(labels) or not databases:
        raise ValueError("need one label stage per structure stage")
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("images", "category", "fraction",
                                                         "strain", "strength", "source",
                                                         "valid", "part")}
    for k, (db, lab) in enumerate(zip(databases, labels)):
        n = len(db["images"])
        if len(lab["load_drop_strain"]) != n:
            raise ValueError(f"source {k}: {n} structures but {len(lab['load_drop_strain'])} labels")
        strain = np.asarray(lab["load_drop_strain"], float)
        strength = np.asarray(lab["tensile_strength"], float)
        valid = np.isfinite(strain) & np.isfinite(strength)
        part = np.full(n, -1, dtype=np.int8)
        part[valid] = _parts(int(valid.sum()), seed + 101 * k)
        cols["images"].append(np.asarray(db["images"], np.uint8))
        cols["category"].append(np.asarray(db["category"], np.int8))
        cols["fraction"].append(np.asarray(db["martensite_fraction"], float))
        cols["strain"].append(strain)
        cols["strength"].append(strength)
        cols["source"].append(np.full(n, k, np.int8))
        cols["valid"].append(valid)
        cols["part"].append(part)
    return LabelledPool(**{k: np.concatenate(v) for k, v in cols.items()})


def dataset_members(pool: LabelledPool, name: str) -> np.ndarray:
    """Indices of the valid structures of data set ``name`` (one of :data:`DATASETS`)."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}: choose one of {DATASETS}")
    cat = lambda c: pool.category == DUAL_PHASE_CATEGORIES.index(c)  # noqa: E731
    if name == "All":
        mask = pool.source == 0
    elif name == "Random":
        mask = (pool.source == 0) & cat("random")
    elif name == "Ellipse":
        mask = (pool.source == 0) & cat("ellipse")
    else:
        lo, hi = RECTANGLE_WINDOW
        mask = cat("rectangle") & (pool.fraction >= lo) & (pool.fraction <= hi)
    return np.nonzero(mask & pool.valid)[0]


@dataclass(frozen=True)
class ConditionScale:
    """Min-max scale of (strain, strength) from the All training part: ``c = (y - lo) / (hi - lo)``.

    >>> s = ConditionScale(np.array([0.0, 400.0]), np.array([1.0, 2000.0]))
    >>> s.normalize([0.5], [1200.0]).tolist()
    [[0.5, 0.5]]
    """

    lo: np.ndarray
    hi: np.ndarray

    @classmethod
    def fit(cls, strain: np.ndarray, strength: np.ndarray) -> "ConditionScale":
        y = np.stack([np.asarray(strain, float), np.asarray(strength, float)], 1)
        if not np.isfinite(y).all() or len(y) < 2:
            raise ValueError("need at least two finite (strain, strength) labels")
        return cls(y.min(0), y.max(0))

    def normalize(self, strain: Any, strength: Any = None) -> np.ndarray:
        """``(n, 1)`` normalized strains, or ``(n, 2)`` with the strengths (MPa)."""
        e = np.atleast_1d(np.asarray(strain, float))
        out = [(e - self.lo[0]) / (self.hi[0] - self.lo[0])]
        if strength is not None:
            s = np.broadcast_to(np.atleast_1d(np.asarray(strength, float)), e.shape)
            out.append((s - self.lo[1]) / (self.hi[1] - self.lo[1]))
        return np.stack(out, 1).astype(np.float32)


# --------------------------------------------------------------------------------------------
# the trained models
# --------------------------------------------------------------------------------------------
@dataclass
class GenerativeModels:
    """The VQ-VAE, every trained PixelCNN and what they were trained on.

    ``pixelcnns[(kind, dataset)]`` with kind in :data:`MODEL_KINDS`; ``info`` the same keys
    with history, test bits per code and split; ``codes (n, 4, s, s)`` the pool's code maps.
    """

    profile: str
    recipe: GenerativeRecipe
    pool: LabelledPool
    scale: ConditionScale
    vqvae: VQVAE
    vqvae_path: Path
    codes: np.ndarray
    pixelcnns: dict[tuple[str, str], GatedPixelCNN]
    info: dict[tuple[str, str], dict[str, Any]]
    paths: dict[tuple[str, str], Path]
    stage_paths: dict[str, Path] = field(default_factory=dict)

    def condition(self, kind: str, strain: Any, strength: Any = None) -> np.ndarray | None:
        """The normalized condition of model ``kind`` for physical targets (strain, MPa)."""
        if kind == "uncond":
            return None
        if kind == "fsts":
            if strength is None:
                raise ValueError("the FS+TS model needs a target strength (MPa)")
            return self.scale.normalize(strain, strength)
        return self.scale.normalize(strain)

    def decode(self, codes: Any, batch_size: int = 256) -> np.ndarray:
        """Binary structures ``(n, N, N)`` uint8 of code maps ``(n, s, s)``."""
        return self.vqvae.decode_batched(codes, batch_size)

    def sample_codes(self, kind: str, dataset: str, n: int, strain: Any = None,
                     strength: Any = None, seed: int = 0, temperature: float = 1.0) -> np.ndarray:
        """``n`` code maps ``(n, s, s)`` from model (kind, dataset) at the targets (scalars or
        ``(n,)`` arrays), seeded."""
        key = (kind, dataset)
        if key not in self.pixelcnns:
            raise ValueError(f"no model {key}: trained are {sorted(self.pixelcnns)}")
        model = self.pixelcnns[key]
        cond = None
        if kind != "uncond":
            if strain is None:
                raise ValueError(f"model {key} needs a target strain")
            cond = self.condition(kind, strain, strength)
            cond = np.repeat(cond, n, axis=0) if len(cond) == 1 else cond
        return model.sample(n, cond, seed=seed, temperature=temperature).numpy()

    def generate(self, kind: str, dataset: str, n: int, strain: Any = None,
                 strength: Any = None, seed: int = 0, temperature: float = 1.0) -> np.ndarray:
        """``n`` structures ``(n, N, N)`` uint8 (1 = martensite) at the targets, seeded."""
        return self.decode(self.sample_codes(kind, dataset, n, strain, strength, seed,
                                             temperature))


def _prof(profile: Profile | str) -> Profile:
    prof = get_profile(profile) if isinstance(profile, str) else profile
    if not isinstance(prof, Profile):
        raise ValueError(f"profile must be a Profile or a profile name, got {profile!r}")
    return prof


def generative_models(profile: Profile | str, recipe: GenerativeRecipe | None = None,
                      kinds: Sequence[str] = MODEL_KINDS, datasets: Sequence[str] = DATASETS,
                      device: torch.device | str | None = None, progress: bool = True,
                      scheduler_address: str | None = None) -> GenerativeModels:
    """Build (or load from the cache) every stage the generative notebooks stand on.

    The database and its GTN labels (notebooks 01-02), the extra Rectangle structures and
    their labels, the unlabelled structures, the VQ-VAE, the pool's code maps and one PixelCNN
    per (kind, data set): FS on every data set, FS+TS on All, unconditional on every data set.
    """
    prof = _prof(profile)
    recipe = get_generative_recipe(prof.name) if recipe is None else recipe
    stage_paths: dict[str, Path] = {}
    db_path = dual_phase_dataset(prof)
    lab_path = fracture_labels(prof, db_path, progress=progress,
                               scheduler_address=scheduler_address)
    sources = [(db_path, lab_path)]
    stage_paths.update(database=db_path, labels=lab_path)
    if recipe.n_extra_rectangle > 0:
        extra = extra_dual_phase_dataset(prof, EXTRA_RECTANGLE_STAGE, recipe.n_extra_rectangle,
                                         ("rectangle",), RECTANGLE_WINDOW, stream=1)
        extra_lab = fracture_labels(prof, extra, progress=progress,
                                    scheduler_address=scheduler_address)
        sources.append((extra, extra_lab))
        stage_paths.update(extra_rectangles=extra, extra_labels=extra_lab)
    pool = labelled_pool([load_stage(a) for a, _ in sources], [load_stage(b) for _, b in sources],
                         recipe.seed)
    all_train = pool.indices(dataset_members(pool, "All"), "train")
    scale = ConditionScale.fit(pool.strain[all_train], pool.strength[all_train])

    unlabelled = extra_dual_phase_dataset(prof, UNLABELLED_STAGE,
                                          recipe.n_unlabelled_per_category, stream=2)
    stage_paths["unlabelled"] = unlabelled
    train_imgs = np.concatenate([pool.images[pool.part == 0], load_stage(unlabelled)["images"]])
    val_imgs = pool.images[pool.part == 1]
    upstream = [read_key(p) for pair in sources for p in pair] + [read_key(unlabelled)]
    vq_path = vqvae_stage(prof.name, train_imgs, val_imgs, recipe, upstream, device, progress)
    vqvae = load_vqvae(vq_path, device)
    codes_path = cached_stage(prof.name, "vqvae_codes", {"n": len(pool.images)},
                              lambda: {"codes": encode_mirrors(vqvae, pool.images)},
                              upstream=[read_key(vq_path)] + upstream)
    codes = load_stage(codes_path)["codes"]
    stage_paths.update(vqvae=vq_path, codes=codes_path)

    pixelcnns, info, paths = {}, {}, {}
    plan = [(k, d) for k in kinds for d in (("All",) if k == "fsts" else datasets)]
    for kind, dataset in plan:
        model, model_info, path = _train_pixelcnn(prof.name, pool, scale, codes, codes_path,
                                                  recipe, kind, dataset, "", device, progress)
        pixelcnns[(kind, dataset)], info[(kind, dataset)], paths[(kind, dataset)] = \
            model, model_info, path
    return GenerativeModels(prof.name, recipe, pool, scale, vqvae, vq_path, codes, pixelcnns,
                            info, paths, stage_paths)


def _train_pixelcnn(profile: str, pool: LabelledPool, scale: ConditionScale, codes: np.ndarray,
                    codes_path: Path, recipe: GenerativeRecipe, kind: str, dataset: str,
                    suffix: str, device: torch.device | str | None, progress: bool
                    ) -> tuple[GatedPixelCNN, dict[str, Any], Path]:
    """Train (or load) the PixelCNN of (kind, data set): stage ``pixelcnn_<kind>_<dataset><suffix>``."""
    members = dataset_members(pool, dataset)
    split = pool.member_split(members)
    if len(split["train"]) == 0:
        raise ValueError(f"data set {dataset} has no training structures in profile {profile}")
    cond = None
    if kind == "fs":
        cond = scale.normalize(pool.strain[members])
    elif kind == "fsts":
        cond = scale.normalize(pool.strain[members], pool.strength[members])
    description = {"kind": kind, "dataset": dataset, "n_structures": int(len(members)),
                   "condition": {"fs": "load_drop_strain", "fsts": "load_drop_strain, tensile_strength",
                                 "uncond": None}[kind],
                   "scale_lo": scale.lo.tolist(), "scale_hi": scale.hi.tolist()}
    name = f"pixelcnn_{kind}_{dataset.lower()}{suffix}"
    path = pixelcnn_stage(profile, name, codes[members], cond, split, recipe,
                          [read_key(codes_path)], description, device, progress)
    model, model_info = load_pixelcnn(path, device)
    model_info["members"] = members
    return model, model_info, path


def pixelcnn_with_seed(models: GenerativeModels, kind: str, dataset: str, seed: int,
                       device: torch.device | str | None = None, progress: bool = True
                       ) -> tuple[GatedPixelCNN, dict[str, Any], Path]:
    """A second PixelCNN of (kind, data set): same data, split, recipe and condition as
    ``models.pixelcnns[(kind, dataset)]``, another training seed (initial weights, batches,
    augmentation). Stage ``pixelcnn_<kind>_<dataset>_seed<seed>``. For the question how much
    of what a model says is the model and not the data (notebook 07)."""
    if (kind, dataset) not in models.pixelcnns:
        raise ValueError(f"no model {(kind, dataset)}: trained are {sorted(models.pixelcnns)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if int(seed) == models.recipe.seed:
        raise ValueError(f"seed {seed} is the recipe's own: that is the model already trained")
    recipe = dataclasses.replace(models.recipe, seed=int(seed))
    return _train_pixelcnn(models.profile, models.pool, models.scale, models.codes,
                           models.stage_paths["codes"], recipe, kind, dataset, f"_seed{int(seed)}",
                           device, progress)


# --------------------------------------------------------------------------------------------
# the slider callback and the validation structures
# --------------------------------------------------------------------------------------------
def slider_view(models: GenerativeModels, strain: float, strength: float | None = None,
                seed: int = 0, dataset: str = "All", n: int = 6) -> np.ndarray:
    """The image the notebook's sliders show: ``n`` structures side by side, ``(N, n*N)``
    uint8 (1 = martensite), generated by the FS model of ``dataset`` (or the FS+TS model
    when ``strength`` in MPa is given) at target ``strain``, with ``seed``."""
    kind = "fs" if strength is None else "fsts"
    data = "All" if kind == "fsts" else dataset
    imgs = models.generate(kind, data, n, strain, strength, seed=int(seed))
    return np.concatenate(list(imgs), axis=1)


def generated_stage(models: GenerativeModels, dataset: str, targets: Sequence[float],
                    n_per_target: int, seed: int, kind: str = "fs",
                    strength: float | None = None) -> Path:
    """Stage ``generated_<kind>_<dataset>``: ``n_per_target`` structures per target strain.

    Datasets ``images (n, N, N)`` uint8, ``target_strain (n,)``, ``target_strength (n,)``
    (NaN for the FS model); the structures can be labelled by
    :func:`lib.fe.fracture_labels.fracture_labels` like the database.
    """
    targets = [float(t) for t in targets]
    if not targets or n_per_target < 1:
        raise ValueError("need at least one target and n_per_target >= 1")

    def compute() -> dict[str, np.ndarray]:
        tgt = np.repeat(np.asarray(targets, dtype=float), n_per_target)
        return {"images": models.generate(kind, dataset, len(tgt), tgt, strength, seed=seed),
                "target_strain": tgt,
                "target_strength": np.full(len(tgt), np.nan if strength is None else strength)}

    params = {"kind": kind, "dataset": dataset, "targets": targets,
              "n_per_target": int(n_per_target), "seed": int(seed), "strength": strength}
    return cached_stage(models.profile, f"generated_{kind}_{dataset.lower()}", params, compute,
                        upstream=[read_key(models.paths[(kind, dataset)]),
                                  read_key(models.vqvae_path)])
