"""Fine-tune the last blocks of the backbone with SEM augmentations, on CPU, in a time budget.

Why (issue 20): every other method keeps the ImageNet features frozen; a category shot on an
unseen microscope may need features that ignore detector contrast, gamma, noise and focus, which
only training the network itself can learn. On 2 CPU cores the whole network is far too slow to
train, so only its tail is: everything before the last ``blocks`` inverted-residual units is
frozen and run **once** per image and augmented view (through OpenVINO), its activations cached;
each epoch then runs only the small tail (those units, ``conv_head`` and its BN, pooling) and a
linear head. BatchNorm stays in eval mode (running statistics frozen: a few hundred images
would wreck them); the tail's weights and BN affine parameters train.

Recipe (linear probe, then fine-tune: Kumar et al., ICLR 2022, which distorts pretrained
features less and generalises better out of distribution than training from a random head):
the head is first fitted on the frozen tail's features of the clean views, then tail and head
train jointly with Adam on one random view of each image per epoch, early-stopped on an inner
validation split (clean views), until ``seconds`` or ``max_epochs``. The best epoch's tail is
kept; for parity with the product, :func:`semcat.crossval.fit_finetuned` then fits semcat's own head
(:func:`semcat.crossval.fit_semcat`) on the tuned tail's features.

Augmentations (image domain, before the frozen part; drawn from ``(seed, image index)``, never
from the category): random resized crop, flips and 90° rotations, brightness/contrast, gamma,
a detector shift (contrast inverted, SE <-> BSE-like), shot noise, scan-line noise, blur.

An experiment measured by ``benchmarks/cross_instrument.py`` (methods ``semcat+ft*`` of
:data:`semcat.crossval.METHODS`), not a product option: see docs/explanation/limits.md.
"""
from __future__ import annotations

import copy
import logging
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

if TYPE_CHECKING:
    import torch

    from semcat.backbones import BackboneSpec

__all__ = ["CACHED_BLOCKS", "FinetuneConfig", "FinetuneResult", "augmented_views", "file_activations",
           "finetune_tail", "sem_augment", "split_backbone", "tail_features"]

log = logging.getLogger(__name__)

CACHED_BLOCKS = 2
"""Activations are cached at the input of the last this many units: configs training fewer units
run the frozen ones in between once per fit, so every config shares one cache per image set."""
VIEW = "center"
"""The view fine-tuning was measured on (issue 20; rejected, ``benchmarks/cross_instrument.py``): the
paper's centre crop, the default view of then, kept so that its measurements can be rerun."""


@dataclass(frozen=True)
class FinetuneConfig:
    """What is trained and for how long.

    ``blocks``: trailing inverted-residual units trained (with ``conv_head``), at most
    :data:`CACHED_BLOCKS`; ``seconds``: budget of the joint training in CPU seconds of this
    process (all its threads; checked after every batch): on a machine shared with other jobs a
    wall-clock budget would buy fewer epochs the busier it is, so results would depend on the
    neighbours (with 2 threads busy, a CPU second is about half a wall second on an idle machine); ``views``: augmented views cached per image (plus the clean one);
    ``max_epochs``: a cap (with a generous budget, it makes a run deterministic given the seed);
    ``fixed``: deterministic views cached after the clean one (``noscale``: today's crop of a
    scale-normalised clean view; or :data:`semcat.view_transforms.AUGMENTATIONS`), drawn in training
    like the others and, tuned, extra training rows of the final head (the scale-mixed head's rows).
    """

    blocks: int = 1
    seconds: float = 20.0
    views: int = 3
    max_epochs: int = 40
    lr: float = 3e-4
    head_lr: float = 1e-3
    batch: int = 32
    val_share: float = 0.2
    patience: int = 3
    fixed: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 1 <= self.blocks <= CACHED_BLOCKS:
            raise ValueError(f"blocks must be 1..{CACHED_BLOCKS}; got {self.blocks}")
        if self.seconds <= 0 or self.views < 0 or self.max_epochs < 1:
            raise ValueError(f"need seconds > 0, views >= 0, max_epochs >= 1; got {self}")


@dataclass
class FinetuneResult:
    """The tuned tail and how the training went (seconds: the joint training's CPU time)."""

    tail: Any
    epochs: int
    seconds: float
    stopped: str
    """"budget", "early stop" or "max epochs"."""
    val_accuracy: list[float]


# --- augmentations ---------------------------------------------------------------------------

def sem_augment(img: np.ndarray, size: int, interpolation: str, rng: np.random.Generator) -> np.ndarray:
    """One augmented view (S, S) in [0, 1] of a decoded gray image, as an unseen microscope might show it."""
    from semcat.features import _preprocess_gray

    rows, cols = img.shape
    side = min(rows, cols)
    crop = max(8, round(side * np.sqrt(rng.uniform(0.35, 1.0))))
    r0, c0 = rng.integers(0, rows - crop + 1), rng.integers(0, cols - crop + 1)
    c = _preprocess_gray(img[r0: r0 + crop, c0: c0 + crop], size, interpolation, VIEW)[0]
    c = np.rot90(c[:, ::-1] if rng.random() < 0.5 else c, int(rng.integers(4)))
    if rng.random() < 0.25:  # detector shift: what was bright (edges in SE) is dark (BSE-like)
        c = 1.0 - c
    c = np.clip(c, 0, 1) ** np.exp(rng.uniform(-0.8, 0.8))
    c = (c - 0.5) * rng.uniform(0.6, 1.4) + 0.5 + rng.uniform(-0.15, 0.15)
    if rng.random() < 0.4:
        c = cv2.GaussianBlur(np.ascontiguousarray(c, np.float32), (0, 0), rng.uniform(0.5, 2.0))
    if rng.random() < 0.6:
        c = c + rng.normal(0, rng.uniform(0.02, 0.12), c.shape)
    if rng.random() < 0.4:  # scan-line noise: each line's offset
        c = c + rng.normal(0, rng.uniform(0.01, 0.06), (c.shape[0], 1))
    return np.clip(c, 0, 1).astype(np.float32)


def augmented_views(img: np.ndarray, spec: BackboneSpec, views: int, rng: np.random.Generator) -> np.ndarray:
    """The centre crop (:data:`VIEW`) and ``views`` augmented views: (1 + views, S, S)."""
    from semcat.features import _preprocess_gray

    clean = _preprocess_gray(img, spec.input_size, spec.interpolation, VIEW)
    extra = [sem_augment(img, spec.input_size, spec.interpolation, rng)[None] for _ in range(views)]
    return np.concatenate([clean, *extra])


# --- the split network -----------------------------------------------------------------------

def split_backbone(spec: BackboneSpec, blocks: int = CACHED_BLOCKS) -> tuple[torch.nn.Module, torch.nn.Module]:
    """``(prefix, tail)`` of an EfficientNet-style timm model, both in eval mode with frozen BN
    statistics: prefix = stem and every unit but the last ``blocks``; tail = those units,
    ``conv_head``, its BN and global pooling (image batch -> pooled features as ``build_model``)."""
    import torch

    from semcat.backbones import create_timm_model

    net = create_timm_model(spec)
    if not all(hasattr(net, a) for a in ("conv_stem", "bn1", "blocks", "conv_head", "bn2")):
        raise ValueError(f"fine-tuning needs an EfficientNet-style backbone (conv_stem, blocks, conv_head); "
                         f"{spec.name} is {type(net).__name__}")
    units = [u for stage in net.blocks for u in stage]
    prefix = torch.nn.Sequential(net.conv_stem, net.bn1, *units[:-blocks]).eval()
    tail = torch.nn.Sequential(*units[-blocks:], net.conv_head, net.bn2, torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten()).eval()
    for p in prefix.parameters():
        p.requires_grad_(False)
    return prefix, tail


def file_activations(paths: list[str], spec: BackboneSpec, *, crop_databar: bool = True, views: int = 3,
                     seed: int = 0, batch: int = 32, scale_nm: float | None = None,
                     fixed: tuple[str, ...] = ()) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Activations entering the last :data:`CACHED_BLOCKS` units, (N, 1 + len(fixed) + views, C, H, W),
    of each readable file's clean view, ``fixed`` views (:class:`FinetuneConfig`) and augmented views,
    and ``(path, error)`` of the others. With ``scale_nm`` the clean view (and the fixed views but
    ``noscale``) is the physical crop of :mod:`semcat.physical_scale` when the file records a pixel size.

    The frozen prefix runs through OpenVINO (fp32; several times faster than torch's eager CPU path); image ``i``'s
    views are drawn from ``(seed, i)``.
    """
    import openvino as ov
    import torch

    from semcat.features import _file_views
    from semcat.images import read_file_bytes, read_image_bytes
    from semcat.runtime import model_input

    prefix, _ = split_backbone(spec)
    size = spec.input_size
    n_views = 1 + len(fixed) + views
    compiled: Any = None
    outs, pending, errors = [], [], []

    def flush() -> None:  # the frozen prefix on the pending views (a batch at a time: memory stays small)
        nonlocal compiled
        x = model_input(np.concatenate(pending), spec)
        pending.clear()
        if compiled is None:
            with torch.no_grad():
                compiled = ov.Core().compile_model(ov.convert_model(prefix, example_input=torch.from_numpy(x[:1])),
                                                   "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        outs.append(compiled(x)[0])

    for i, p in enumerate(paths):
        try:
            data = read_file_bytes(p)
            img, _ = read_image_bytes(data, p, crop_databar=crop_databar, max_side=2 * size)
            stack = augmented_views(img, spec, views, np.random.default_rng([seed, i]))
            if scale_nm is not None or fixed:
                shown = [_file_views(data, p, spec, crop_databar=crop_databar, view=VIEW if v == "noscale" else v,
                                     scale_nm=None if v == "noscale" else scale_nm)[0] for v in (VIEW, *fixed)]
                stack = np.concatenate([*shown, stack[1:]])
        except Exception as e:  # a bad file must never stop the batch
            errors.append((p, f"{type(e).__name__}: {e}"))
            continue
        pending.append(stack)
        if len(pending) * n_views >= batch:
            flush()
    if pending:
        flush()
    if not outs:
        return np.zeros((0, n_views, 0, 0, 0), np.float32), errors
    out = np.concatenate(outs)
    return out.reshape(-1, n_views, *out.shape[1:]).astype(np.float32, copy=False), errors


def tail_features(tail: torch.nn.Module, acts: np.ndarray, batch: int = 64) -> np.ndarray:
    """Pooled features (N, D) of activations (N, C, H, W) through ``tail`` (no gradients)."""
    import torch

    tail.eval()
    with torch.no_grad():
        return np.concatenate([tail(torch.from_numpy(np.ascontiguousarray(acts[s: s + batch]))).numpy()
                               for s in range(0, len(acts), batch)]) if len(acts) else np.zeros((0, 0), np.float32)


# --- training --------------------------------------------------------------------------------

def _frozen_units(tail: torch.nn.Module, config: FinetuneConfig) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Split a :data:`CACHED_BLOCKS` tail into its frozen leading units and the trained rest."""
    import torch

    skip = CACHED_BLOCKS - config.blocks
    frozen = torch.nn.Sequential(*list(tail)[:skip]).eval()
    for p in frozen.parameters():
        p.requires_grad_(False)
    return frozen, torch.nn.Sequential(*list(tail)[skip:]).eval()


def _inner_split(y: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """Validation mask: ``share`` of each class with at least 3 images (the rest all train)."""
    val = np.zeros(len(y), bool)
    for c in sorted(set(y.tolist())):
        members = np.flatnonzero(y == c)
        if len(members) >= 3:
            val[rng.permutation(members)[: max(1, round(share * len(members)))]] = True
    return val


def finetune_tail(acts: np.ndarray, y: np.ndarray, classes: list[str], tail: torch.nn.Module,
                  config: FinetuneConfig, seed: int = 0) -> FinetuneResult:
    """Train ``tail`` (a copy of the :data:`CACHED_BLOCKS`-unit tail of :func:`split_backbone`)
    and a linear head on cached activations ``acts`` (N, 1 + views, C, H, W) of labelled images.

    Only the last ``config.blocks`` units, ``conv_head`` and its BN affine parameters change; BN
    statistics and every other parameter stay bit-identical. Deterministic given ``seed`` when
    ``config.max_epochs`` or early stopping ends the run before the time budget does.
    """
    import torch

    t0, wall0 = time.process_time(), time.monotonic()
    tail = copy.deepcopy(tail).eval()
    frozen, trained = _frozen_units(tail, config)
    rng = np.random.default_rng(seed)
    index = {c: k for k, c in enumerate(classes)}
    target = torch.as_tensor([index[v] for v in y.astype(str)], dtype=torch.long)
    val = _inner_split(y.astype(str), config.val_share, rng)
    val_t = torch.from_numpy(val)
    with torch.no_grad():  # the frozen units once: (N, V, C, H, W) -> the trained part's input
        n, v = acts.shape[:2]
        x = frozen(torch.from_numpy(np.ascontiguousarray(acts.reshape(n * v, *acts.shape[2:]))))
        x = x.reshape(n, v, *x.shape[1:])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = torch.nn.Linear(int(trained(x[:1, 0]).shape[1]), len(classes))
        _linear_probe(head, torch.from_numpy(tail_features(trained, x[~val_t, 0].numpy())), target[~val_t])
        params = list(trained.parameters())
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.Adam([{"params": params, "lr": config.lr}, {"params": head.parameters(), "lr": config.head_lr}])
        train_rows = np.flatnonzero(~val)
        best, best_loss, since, accs, stopped, epoch = None, np.inf, 0, [], "max epochs", 0
        start = time.process_time()
        while epoch < config.max_epochs and stopped == "max epochs":
            order = rng.permutation(train_rows)
            pick = rng.integers(0, v, len(order))  # one random view of each image per epoch
            for s in range(0, len(order), config.batch):
                rows = torch.from_numpy(order[s: s + config.batch])
                views = torch.from_numpy(pick[s: s + config.batch])
                trained.eval()  # BN statistics frozen
                loss = torch.nn.functional.cross_entropy(head(trained(x[rows, views])), target[rows])
                opt.zero_grad()
                loss.backward()
                opt.step()
                if time.process_time() - start >= config.seconds:
                    stopped = "budget"
                    break
            epoch += 1
            if not val.any():  # too few images per class to hold any out: the last epoch is kept
                best = copy.deepcopy(trained.state_dict())
                continue
            loss_v, acc_v = _validate(trained, head, x[val_t, 0], target[val_t])
            accs.append(acc_v)
            if loss_v < best_loss:
                best, best_loss, since = copy.deepcopy(trained.state_dict()), loss_v, 0
            else:
                since += 1
                if since >= config.patience and stopped == "max epochs":
                    stopped = "early stop"
        seconds = time.process_time() - start
    if best is not None:
        trained.load_state_dict(best)
    for p in tail.parameters():
        p.requires_grad_(False)
    total, wall = time.process_time() - t0, time.monotonic() - wall0
    log.info("fine-tuned %d block(s): %d epochs in %.1f CPU s (budget %.0f, %s), inner validation accuracy %s; "
             "%.1f CPU s, %.1f s wall in all", config.blocks, epoch, seconds, config.seconds, stopped,
             [round(a, 3) for a in accs], total, wall,
             extra={"finetune": {**asdict(config), "epochs": epoch, "cpu_seconds": seconds, "stopped": stopped,
                                 "total_cpu_seconds": total, "wall_seconds": wall, "train_images": len(y)}})
    return FinetuneResult(tail.eval(), epoch, seconds, stopped, accs)


def _linear_probe(head: torch.nn.Linear, feats: torch.Tensor, target: torch.Tensor, steps: int = 60) -> None:
    """Fit the head on frozen features first (L-BFGS, small L2), so fine-tuning starts from a good head."""
    import torch

    mu, sd = feats.mean(0), feats.std(0) + 1e-3
    opt = torch.optim.LBFGS(head.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        w = head.weight
        loss = (torch.nn.functional.cross_entropy(torch.nn.functional.linear((feats - mu) / sd, w, head.bias), target)
                + 1e-3 * (w * w).sum())
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():  # fold the standardisation into the head: it then reads raw features
        head.weight.div_(sd)
        head.bias.sub_(head.weight @ mu)


def _validate(trained: torch.nn.Module, head: torch.nn.Module, x: torch.Tensor,
              target: torch.Tensor) -> tuple[float, float]:
    import torch

    trained.eval()
    with torch.no_grad():
        logits = head(trained(x))
        return (float(torch.nn.functional.cross_entropy(logits, target)),
                float((logits.argmax(1) == target).float().mean()))
