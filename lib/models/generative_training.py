"""Training the VQ-VAE and the conditional PixelCNNs of Part A, as cached stages (SPEC A3-A4).

* **VQ-VAE**: Adam on binary cross-entropy + beta * commitment, random periodic shifts and
  mirror flips of the structures as augmentation (a VQ-VAE needs no labels, so it also trains
  on unlabelled structures from the generators). Best held-out reconstruction kept.
* **PixelCNN**: Adam on the cross-entropy of every code given the codes before it and the
  condition. Each structure is encoded in its four mirror images (identity, flip in x, in y,
  both: the fracture labels are exactly invariant under them, uniaxial tension along x), and
  every batch rolls the code maps by a random number of codes in both directions: the encoder
  is periodic and shift-equivariant by its downsampling factor, so a rolled code map *is*
  the code map of the structure shifted by 8 px, whose label is the same. Best validation
  NLL kept.
* Same seed, same weights: initial weights, batch order and augmentation come from
  generators seeded by the recipe's seed (on the CPU; CUDA convolutions may differ in the
  last bits).

Recipes per profile are :data:`RECIPES` (:func:`get_generative_recipe`), the one place where
sizes and epochs live. Trained weights are stages of :mod:`lib.stages`.
"""
from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm  # text bars: they read right in a saved notebook too

from lib.models.pixelcnn import GatedPixelCNN, PixelCNNConfig, bits_per_code, check_codes
from lib.models.training import augment_periodic, default_device, load_state, state_arrays
from lib.models.vqvae import VQVAE, VQVAEConfig, check_images, codebook_usage

__all__ = ["GenerativeRecipe", "RECIPES", "get_generative_recipe", "train_vqvae", "vqvae_stage",
           "load_vqvae", "encode_mirrors", "train_pixelcnn", "pixelcnn_stage", "load_pixelcnn",
           "reconstruction_metrics", "state_arrays", "load_state"]

GENERATIVE_VERSION = 1


@dataclass(frozen=True)
class GenerativeRecipe:
    """Sizes and optimizer settings of the generative models of one profile.

    ``vqvae``: architecture; ``vqvae_steps`` optimizer steps of ``vqvae_batch`` structures at
    learning rate ``vqvae_lr``; ``n_unlabelled_per_category`` extra generated structures per
    category the VQ-VAE also trains on; ``pixelcnn_width`` / ``pixelcnn_layers``: architecture
    of every PixelCNN, trained on batches of ``pixelcnn_batch`` code maps (each structure in a
    random mirror image and roll) at ``pixelcnn_lr`` for ``pixelcnn_epochs`` passes over its
    training structures but at least ``pixelcnn_steps`` optimizer steps (:meth:`steps_for`),
    so a small data set is seen for more epochs and a large one is not cut short;
    ``n_extra_rectangle``: additional Rectangle structures (martensite 20-30 %) generated and
    labelled so that the Rectangle data set has enough; ``seed``.
    """

    vqvae: VQVAEConfig = VQVAEConfig()
    vqvae_steps: int = 1600
    vqvae_batch: int = 32
    vqvae_lr: float = 2e-3
    n_unlabelled_per_category: int = 500
    pixelcnn_width: int = 32
    pixelcnn_layers: int = 10
    pixelcnn_steps: int = 300
    pixelcnn_epochs: float = 60.0
    pixelcnn_batch: int = 32
    pixelcnn_lr: float = 2e-3
    n_extra_rectangle: int = 120
    seed: int = 2024

    def vqvae_params(self) -> dict[str, Any]:
        """What the VQ-VAE's weights depend on (its stage parameters)."""
        return {"version": GENERATIVE_VERSION, "config": self.vqvae.as_dict(),
                "steps": self.vqvae_steps, "batch": self.vqvae_batch, "lr": self.vqvae_lr,
                "n_unlabelled_per_category": self.n_unlabelled_per_category, "seed": self.seed}

    def pixelcnn_config(self, n_cond: int) -> PixelCNNConfig:
        """The PixelCNN architecture for ``n_cond`` condition values (0 = unconditional)."""
        return PixelCNNConfig(n_codes=self.vqvae.n_codes, code_size=self.vqvae.code_size,
                              width=self.pixelcnn_width, n_layers=self.pixelcnn_layers,
                              n_cond=n_cond)

    def steps_for(self, n_train: int) -> int:
        """Optimizer steps of a PixelCNN on ``n_train`` structures: ``pixelcnn_epochs`` passes,
        at least ``pixelcnn_steps``.

        >>> GenerativeRecipe().steps_for(560), GenerativeRecipe().steps_for(144)
        (1050, 300)
        """
        return max(int(self.pixelcnn_steps),
                   int(np.ceil(self.pixelcnn_epochs * n_train / self.pixelcnn_batch)))

    def pixelcnn_params(self, n_train: int) -> dict[str, Any]:
        """What a PixelCNN's weights on ``n_train`` structures depend on besides its data
        (stage parameters)."""
        return {"version": GENERATIVE_VERSION, "width": self.pixelcnn_width,
                "layers": self.pixelcnn_layers, "steps": self.steps_for(n_train),
                "batch": self.pixelcnn_batch, "lr": self.pixelcnn_lr, "seed": self.seed}


#: The recipes per profile. ``default`` is sized for ~25 min of training on two CPU cores;
#: ``paper`` is the authors' published architecture (codes of dimension 128, K = 512, gated
#: PixelCNN of width 64 and 15 layers), meant for a GPU.
RECIPES: dict[str, GenerativeRecipe] = {
    "smoke": GenerativeRecipe(
        vqvae=VQVAEConfig(channels=(8, 16, 32), code_dim=32, n_codes=32),
        vqvae_steps=120, vqvae_batch=16, n_unlabelled_per_category=8, pixelcnn_width=16,
        pixelcnn_layers=4, pixelcnn_steps=12, pixelcnn_epochs=2.0, pixelcnn_batch=16,
        n_extra_rectangle=8),
    "default": GenerativeRecipe(),
    "paper": GenerativeRecipe(
        vqvae=VQVAEConfig(channels=(32, 64, 128), code_dim=128, n_codes=512, n_res=2),
        vqvae_steps=20000, vqvae_batch=64, n_unlabelled_per_category=2500, pixelcnn_width=64,
        pixelcnn_layers=15, pixelcnn_steps=20000, pixelcnn_epochs=200.0, pixelcnn_batch=64,
        n_extra_rectangle=0),
}


def get_generative_recipe(profile: str, **overrides: Any) -> GenerativeRecipe:
    """The recipe of ``profile`` (a name or a Profile), with fields overridden."""
    name = getattr(profile, "name", profile)
    if name not in RECIPES:
        raise ValueError(f"no generative recipe for profile {name!r}: choose one of {sorted(RECIPES)}")
    recipe = RECIPES[name]
    unknown = set(overrides) - {f.name for f in dataclasses.fields(GenerativeRecipe)}
    if unknown:
        raise ValueError(f"unknown recipe field(s) {sorted(unknown)}")
    return dataclasses.replace(recipe, **overrides) if overrides else recipe


# --------------------------------------------------------------------------------------------
# weights <-> stage arrays
# --------------------------------------------------------------------------------------------
# --------------------------------------------------------------------------------------------
# VQ-VAE
# --------------------------------------------------------------------------------------------
@torch.no_grad()
def reconstruction_metrics(model: VQVAE, images: Any, batch_size: int = 128) -> dict[str, Any]:
    """Held-out quality of a VQ-VAE on binary ``images (n, N, N)``.

    ``pixel_accuracy`` (share of pixels reconstructed right), ``fraction_error`` (n,)
    reconstructed minus original martensite fraction, ``perplexity`` and ``dead_fraction`` of
    the codebook over these images' codes, ``codes (n, n_c, n_c)`` and the binary
    ``reconstructions (n, N, N)``.
    """
    imgs = np.asarray(images)
    codes = model.encode_batched(imgs, batch_size)
    recon = model.decode_batched(codes, batch_size)
    usage = codebook_usage(codes, model.config.n_codes)
    return {"pixel_accuracy": float((recon == imgs).mean()),
            "fraction_error": recon.mean(axis=(1, 2)) - imgs.mean(axis=(1, 2)),
            "perplexity": usage["perplexity"], "dead_fraction": usage["dead_fraction"],
            "codes": codes, "reconstructions": recon}


def train_vqvae(train_images: np.ndarray, val_images: np.ndarray, recipe: GenerativeRecipe,
                device: torch.device | str | None = None, progress: bool = True,
                eval_every: int = 250) -> tuple[VQVAE, dict[str, Any]]:
    """Train a VQ-VAE on binary ``train_images (n, N, N)``; keep the best on ``val_images``.

    Returns the model (eval mode, on ``device``) and a history with ``step``, ``train_loss``,
    ``train_accuracy`` (running means over each evaluation interval), ``val_accuracy``,
    ``perplexity`` (of the validation codes) and ``seconds`` (wall time of training).
    """
    check_images(train_images[:1], recipe.vqvae.image_size)
    check_images(val_images[:1], recipe.vqvae.image_size)
    device = torch.device(device) if device is not None else default_device()
    torch.manual_seed(recipe.seed)
    model = VQVAE(recipe.vqvae).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=recipe.vqvae_lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=recipe.vqvae_steps,
                                                       eta_min=recipe.vqvae_lr / 20)
    gen = torch.Generator().manual_seed(recipe.seed)
    x_all = torch.from_numpy(np.asarray(train_images, dtype=np.float32))[:, None]
    history: dict[str, list] = {"step": [], "train_loss": [], "train_accuracy": [],
                                "val_accuracy": [], "perplexity": []}
    best, best_state = -1.0, None
    run_loss, run_acc, run_n = 0.0, 0.0, 0
    t0 = time.perf_counter()
    bar = tqdm(range(1, recipe.vqvae_steps + 1), desc="VQ-VAE", unit="step",
               disable=not progress, leave=False, mininterval=2.0)
    for step in bar:
        model.train()
        idx = torch.randint(0, len(x_all), (recipe.vqvae_batch,), generator=gen)
        x = augment_periodic(x_all[idx], gen).to(device)
        loss, info = model.loss(x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        run_loss += float(loss.detach())
        run_acc += info["pixel_accuracy"]
        run_n += 1
        if step % eval_every == 0 or step == recipe.vqvae_steps:
            model.eval()
            m = reconstruction_metrics(model, val_images)
            history["step"].append(step)
            history["train_loss"].append(run_loss / run_n)
            history["train_accuracy"].append(run_acc / run_n)
            history["val_accuracy"].append(m["pixel_accuracy"])
            history["perplexity"].append(m["perplexity"])
            run_loss, run_acc, run_n = 0.0, 0.0, 0
            bar.set_postfix(val_acc=f"{m['pixel_accuracy']:.4f}", ppl=f"{m['perplexity']:.0f}")
            if m["pixel_accuracy"] > best:
                best = m["pixel_accuracy"]
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    bar.close()
    history["seconds"] = time.perf_counter() - t0
    model.load_state_dict(best_state)
    model.eval()
    return model, history


def vqvae_stage(profile: str, train_images: np.ndarray, val_images: np.ndarray,
                recipe: GenerativeRecipe, upstream: Sequence[str],
                device: torch.device | str | None = None, progress: bool = True) -> Path:
    """Stage ``vqvae``: weights, history and held-out metrics of the VQ-VAE (cached).

    ``upstream``: keys of the stages the images come from (they decide the images).
    """
    from lib.stages import cached_stage

    def compute() -> dict[str, np.ndarray]:
        model, history = train_vqvae(train_images, val_images, recipe, device, progress)
        m = reconstruction_metrics(model, val_images)
        return {**state_arrays(model), "history_json": np.array(json.dumps(history)),
                "val_fraction_error": m["fraction_error"],
                "val_pixel_accuracy": np.array(m["pixel_accuracy"]),
                "val_perplexity": np.array(m["perplexity"]),
                "val_dead_fraction": np.array(m["dead_fraction"]),
                "n_train": np.array(len(train_images)), "n_val": np.array(len(val_images))}

    params = {**recipe.vqvae_params(), "n_train": len(train_images), "n_val": len(val_images)}
    return cached_stage(getattr(profile, "name", profile), "vqvae", params, compute,
                        upstream=list(upstream),
                        attrs={"config": recipe.vqvae.as_dict()})


def load_vqvae(path: Path | str, device: torch.device | str | None = None) -> VQVAE:
    """The VQ-VAE of a ``vqvae`` stage file, in eval mode on ``device``."""
    from lib.stages import load_stage, stage_attrs

    cfg = dict(stage_attrs(path)["config"])
    cfg["channels"] = tuple(cfg["channels"])
    model = VQVAE(VQVAEConfig(**cfg))
    load_state(model, load_stage(path))
    device = torch.device(device) if device is not None else default_device()
    return model.to(device).eval()


@torch.no_grad()
def encode_mirrors(model: VQVAE, images: Any, batch_size: int = 128) -> np.ndarray:
    """Code maps of each structure and its three mirror images, ``(n, 4, n_c, n_c)`` int16.

    Order: identity, flipped in y (rows reversed), flipped in x (columns reversed), both.
    """
    x = check_images(images, model.config.image_size)
    out = [model.encode_batched(x.flip(flip) if flip else x, batch_size)
           for flip in ((), (2,), (3,), (2, 3))]
    return np.stack(out, 1).astype(np.int16)


# --------------------------------------------------------------------------------------------
# PixelCNN
# --------------------------------------------------------------------------------------------
def _code_batch(codes: torch.Tensor, idx: torch.Tensor, gen: torch.Generator,
                augment: bool) -> torch.Tensor:
    """Code maps ``(b, s, s)`` of structures ``idx``: a random mirror image and roll each
    (``augment``), else the identity image."""
    if not augment:
        return codes[idx, 0]
    b, s = len(idx), codes.shape[-1]
    variant = torch.randint(0, codes.shape[1], (b,), generator=gen)
    shifts = torch.randint(0, s, (b, 2), generator=gen)
    maps = codes[idx, variant]
    rows = (torch.arange(s)[None, :] - shifts[:, :1]) % s  # rolled by shifts
    cols = (torch.arange(s)[None, :] - shifts[:, 1:]) % s
    return maps[torch.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]


@torch.no_grad()
def _mean_nll(model: GatedPixelCNN, codes: torch.Tensor, cond: torch.Tensor | None,
              batch_size: int = 256) -> float:
    """Mean NLL per code (nats) of the identity code maps ``codes[:, 0]``."""
    model.eval()
    dev = model.embedding.weight.device
    total, n = 0.0, 0
    for a in range(0, len(codes), batch_size):
        c = codes[a:a + batch_size, 0].long().to(dev)
        h = cond[a:a + batch_size] if cond is not None else None
        logits = model(c, h)
        total += float(F.cross_entropy(logits, c, reduction="sum"))
        n += c.numel()
    return total / max(n, 1)


def train_pixelcnn(codes: np.ndarray, cond: np.ndarray | None, train_idx: np.ndarray,
                   val_idx: np.ndarray, recipe: GenerativeRecipe,
                   device: torch.device | str | None = None, progress: bool = True,
                   desc: str = "PixelCNN", n_evals: int = 12) -> tuple[GatedPixelCNN, dict[str, Any]]:
    """Train one PixelCNN on ``codes (n, 4, s, s)`` (:func:`encode_mirrors`) with normalized
    conditions ``cond (n, n_cond)`` (``None`` = unconditional).

    ``recipe.steps_for(len(train_idx))`` Adam steps (cosine-decayed learning rate), validated ``n_evals``
    times. Returns the model with the best validation NLL (eval mode) and a history with
    ``step``, ``train_nll`` (running mean since the last evaluation) and ``val_nll`` (nats per
    code) per evaluation, ``best_step``, ``seconds`` and ``seconds_per_epoch`` (one pass over
    the training structures at the measured cost per step).
    """
    cfg_n_cond = 0 if cond is None else int(np.shape(cond)[1])
    config = recipe.pixelcnn_config(cfg_n_cond)
    c_all = check_codes(np.asarray(codes).reshape(-1, *np.shape(codes)[2:]), config.n_codes,
                        config.code_size).view(*np.shape(codes))
    h_all = None if cond is None else torch.as_tensor(np.asarray(cond, dtype=np.float32))
    if h_all is not None and len(h_all) != len(c_all):
        raise ValueError(f"{len(c_all)} code maps but {len(h_all)} conditions")
    train_idx = torch.as_tensor(np.asarray(train_idx, dtype=np.int64))
    val_idx = np.asarray(val_idx, dtype=np.int64)
    if len(train_idx) == 0:
        raise ValueError("train_idx is empty")
    device = torch.device(device) if device is not None else default_device()
    torch.manual_seed(recipe.seed)
    model = GatedPixelCNN(config).to(device)
    steps = recipe.steps_for(len(train_idx))
    opt = torch.optim.Adam(model.parameters(), lr=recipe.pixelcnn_lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps,
                                                       eta_min=recipe.pixelcnn_lr / 20)
    gen = torch.Generator().manual_seed(recipe.seed)
    history: dict[str, Any] = {"step": [], "train_nll": [], "val_nll": []}
    best, best_state = np.inf, None
    val_codes = c_all[val_idx] if len(val_idx) else None
    val_cond = h_all[val_idx] if (h_all is not None and len(val_idx)) else None
    eval_at = set(np.unique(np.linspace(0, steps, n_evals + 1).round().astype(int)[1:]).tolist())
    batch = min(recipe.pixelcnn_batch, len(train_idx))
    t0 = time.perf_counter()
    total, count = 0.0, 0
    bar = tqdm(range(1, steps + 1), desc=desc, unit="step", disable=not progress, leave=False,
               mininterval=2.0)
    for step in bar:
        model.train()
        idx = train_idx[torch.randint(0, len(train_idx), (batch,), generator=gen)]
        c = _code_batch(c_all, idx, gen, augment=True).to(device)
        h = h_all[idx].to(device) if h_all is not None else None
        loss = F.cross_entropy(model(c, h), c)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        total += float(loss.detach())
        count += 1
        if step in eval_at:
            val = _mean_nll(model, val_codes, val_cond) if val_codes is not None else -step
            history["step"].append(step)
            history["train_nll"].append(total / count)
            history["val_nll"].append(val)
            total, count = 0.0, 0
            bar.set_postfix(val=f"{val:.3f}")
            if val < best:
                best, history["best_step"] = val, step
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    bar.close()
    history["seconds"] = time.perf_counter() - t0
    history["seconds_per_epoch"] = history["seconds"] / steps * len(train_idx) / batch
    model.load_state_dict(best_state)
    model.eval()
    return model, history


def pixelcnn_stage(profile: str, name: str, codes: np.ndarray, cond: np.ndarray | None,
                   split: Mapping[str, np.ndarray], recipe: GenerativeRecipe,
                   upstream: Sequence[str], description: Mapping[str, Any],
                   device: torch.device | str | None = None, progress: bool = True) -> Path:
    """Stage ``name`` (``pixelcnn_<model>_<dataset>``): one trained PixelCNN and its test NLL.

    ``split`` holds ``train``, ``val`` and ``test`` indices into ``codes`` / ``cond``;
    ``description`` (JSON-able: data set, condition, scaler) goes into the key and the attrs.
    Stores the weights, the history and ``test_bits_per_code``.
    """
    from lib.stages import cached_stage

    def compute() -> dict[str, np.ndarray]:
        model, history = train_pixelcnn(codes, cond, split["train"], split["val"], recipe,
                                        device, progress, desc=name)
        test = np.asarray(split["test"], dtype=np.int64)
        c = torch.as_tensor(np.asarray(codes)[test].astype(np.int64))
        h = None if cond is None else torch.as_tensor(np.asarray(cond, np.float32)[test])
        test_bits = bits_per_code(_mean_nll(model, c, h)) if len(test) else float("nan")
        return {**state_arrays(model), "history_json": np.array(json.dumps(history)),
                "test_bits_per_code": np.array(test_bits),
                **{f"split_{k}": np.asarray(v, dtype=np.int64) for k, v in split.items()}}

    n_cond = 0 if cond is None else int(np.shape(cond)[1])
    params = {**recipe.pixelcnn_params(len(split["train"])), "n_cond": n_cond,
              "n_items": int(len(codes)),
              "description": dict(description)}
    config = recipe.pixelcnn_config(n_cond)
    return cached_stage(getattr(profile, "name", profile), name, params, compute,
                        upstream=list(upstream),
                        attrs={"config": config.as_dict(), "description": dict(description)})


def load_pixelcnn(path: Path | str, device: torch.device | str | None = None
                  ) -> tuple[GatedPixelCNN, dict[str, Any]]:
    """The PixelCNN of a ``pixelcnn_*`` stage and its stored arrays (history, test NLL, split)."""
    from lib.stages import load_stage, stage_attrs

    attrs = stage_attrs(path)
    model = GatedPixelCNN(PixelCNNConfig(**attrs["config"]))
    data = load_stage(path)
    load_state(model, data)
    device = torch.device(device) if device is not None else default_device()
    info = {"history": json.loads(str(data["history_json"])),
            "test_bits_per_code": float(data["test_bits_per_code"]),
            "description": attrs["description"],
            "split": {k[6:]: data[k] for k in data if k.startswith("split_")}}
    return model.to(device).eval(), info
