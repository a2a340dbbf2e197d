"""A LeNet-style CNN, configurable up to an AlexNet-like depth.

Each block is convolution (3x3, bias) -> ReLU -> 2x2 max pooling with stride 2 (the lecture's neuron:
convolution + bias + activation, then pooling halves each side). After the blocks the maps are flattened
into a fully connected hidden layer (the penultimate feature space) and a linear head. ``channels`` lists
the blocks: LeNet-like [6, 16], AlexNet-like [64, 192, 384, 256, 256]; pooling stops once a side is 1.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from ..augment import Transform, apply, pretext_transforms, random_augment
from ..config import Config
from ..errors import UserError


class CNN(nn.Module):
    """conv blocks -> flatten -> FC hidden (ReLU) -> FC head with ``n_classes`` logits."""

    def __init__(self, in_channels: int, size: int, channels: list[int], hidden: int, n_classes: int):
        super().__init__()
        layers: list[nn.Module] = []
        c, s = in_channels, size
        for width in channels:
            layers += [nn.Conv2d(c, width, kernel_size=3, padding=1), nn.ReLU()]
            if s >= 2:
                layers.append(nn.MaxPool2d(2))
                s //= 2
            c = width
        self.blocks = nn.Sequential(*layers)
        self.hidden = nn.Linear(c * s * s, hidden)
        self.head = nn.Linear(hidden, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations (N, hidden): the CNN's feature space."""
        return F.relu(self.hidden(torch.flatten(self.blocks(x), 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, n_classes)."""
        return self.head(self.features(x))


def transforms_of(meta: dict) -> list[Transform]:
    """The transform classes stored in a checkpoint's meta (self-supervised mode)."""
    return [Transform(int(k), bool(f), int(dy), int(dx)) for k, f, dy, dx in meta["transforms"]]


@torch.no_grad()
def cnn_score(model: CNN, x: torch.Tensor, meta: dict) -> torch.Tensor:
    """Per-sample anomaly score (N,), higher = more anomalous.

    self-supervised: mean over the pretext transforms T_k of -log softmax(model(T_k x))[k] (how badly the
    network recognises which transform was applied; Golan & El-Yaniv 2018);
    supervised: -max softmax(model(x)) (low confidence in every known class).
    """
    model.eval()
    if meta["mode"] == "supervised":
        return -F.softmax(model(x).float(), dim=1).max(dim=1).values
    transforms = transforms_of(meta)
    total = torch.zeros(x.shape[0], device=x.device)
    for k, t in enumerate(transforms):
        total -= F.log_softmax(model(apply(x, t)).float(), dim=1)[:, k]
    return total / len(transforms)


class CNNObjective:
    """What training the CNN means: the labelled class (supervised, augmented) or, without labels, which
    orientation change the data is *not* invariant under was applied (self-supervised, Golan & El-Yaniv
    2018: every frame, after a random allowed symmetry, under every pretext transform, labelled by its index;
    see :func:`cnnpipe.augment.pretext_transforms`).

    ``train_loss`` gives the loss of a training batch and its accuracy, ``val_batch`` the summed metrics of
    a validation batch, its sample count and its (true, predicted) pairs.
    """
    terms = ["accuracy"]

    def __init__(self, cfg: Config, classes: list):
        self.augment = cfg.augment
        self.mode = "supervised" if classes else "self-supervised"
        self.transforms = pretext_transforms(cfg.augment) if self.mode == "self-supervised" else []
        if self.mode == "self-supervised" and not self.transforms:
            raise UserError("the self-supervised CNN predicts orientation changes the data is not invariant under, "
                            "and 'augment' allows every one (rot90 and a flip): give labels (train.cnn.labels_csv) "
                            "or set score.weights.cnn to 0")
        self.n_classes = len(classes) if classes else len(self.transforms)
        a = cfg.augment
        self.augments = a.hflip or a.vflip or a.rot90 or a.translate > 0

    def set_progress(self, epochs_done: float) -> None:
        """Nothing changes with training progress."""

    def train_loss(self, model: nn.Module, b: dict, gen: torch.Generator) -> tuple[torch.Tensor, dict]:
        x, y = b["x"], b["y"]
        if self.mode == "supervised":
            if self.augments:
                x = random_augment(x, self.augment, gen)
        else:
            if self.augments:
                x = random_augment(x, self.augment, gen)
            x = torch.cat([apply(x, t) for t in self.transforms])
            y = torch.arange(len(self.transforms), device=x.device).repeat_interleave(b["x"].shape[0])
        logits = model(x)
        return F.cross_entropy(logits.float(), y), {"accuracy": (logits.argmax(1) == y).float().mean()}

    @torch.no_grad()
    def val_batch(self, model: nn.Module, b: dict) -> tuple[dict[str, float], int, torch.Tensor]:
        x, y = b["x"], b["y"]
        views = [(x, y)] if self.mode == "supervised" else [
            (apply(x, t), torch.full_like(y, k)) for k, t in enumerate(self.transforms)]
        sums, n, pairs = {"loss": 0.0, "accuracy": 0.0}, 0, []
        for xv, yv in views:
            logits = model(xv).float()
            pred = logits.argmax(1)
            sums["loss"] += F.cross_entropy(logits, yv, reduction="sum").item()
            sums["accuracy"] += (pred == yv).sum().item()
            n += len(yv)
            pairs.append(torch.stack([yv, pred], 1))
        return sums, n, torch.cat(pairs)
