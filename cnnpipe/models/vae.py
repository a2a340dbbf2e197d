"""Convolutional variational autoencoder.

encoder: stride-2 convolutions (4x4, padding 1: each halves the side) + leaky ReLU (slope
``encoder_slope``, 0.2) -> flatten -> mean and log-variance of a ``latent_dim`` Gaussian;
z = mu + exp(logvar / 2) * eps (reparameterisation). With a plain ReLU a whole encoder layer could die in
training (no unit positive on any frame, so no gradient ever revives it): the mean and variance were then
constants, every frame had the same posterior and the latent space held nothing (in the suite: 11 of its 18
sky, detector and 6-vs-9 runs). A leaky ReLU always passes a gradient (as DCGAN's discriminator, Radford
et al. 2016);
decoder: linear -> the mirrored upsampling layers, back to exactly the input size (odd sides included),
chosen by ``upsample``:
- ``"resize"`` (default): nearest-neighbour upsampling, then a 3x3 convolution (stride 1, replicate
  padding). Every output pixel sees the same number of weights, at the borders too, so the decoder leaves
  no checkerboard (Odena et al. 2016, "Deconvolution and Checkerboard Artifacts");
- ``"transpose"``: the lecture's transposed convolution (4x4, stride 2, padding 1). Its kernel is divisible
  by the stride, so interior pixels get even overlap, but border pixels get half the taps and learned
  kernels put power at the stride frequency: generated frames show a checkerboard
  (``benchmarks/checkerboard.py`` measures it).
The output is linear: channels are intensity and Sobel maps, not probabilities.

Loss (``vae_loss``) = squared error summed over the unmasked pixels of every channel (a Gaussian
log-likelihood up to a constant) + beta * KL(q(z|x) || N(0, I)). Pixels with ``valid`` < 0.5 (mostly
masked/NaN or padding in the input) do not count.
"""
from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from ..augment import random_augment
from ..config import Config


log = logging.getLogger(__name__)

UPSAMPLE = ("resize", "transpose")


# _PHASE[a][o, d]: tap d (-1, 0, 1 -> 0, 1, 2) of a 3x3 kernel on the 2x nearest-upsampled frame, at output
# rows (or columns) of parity a, reads the input at offset o (-1, 0, 1 -> 0, 1, 2); taps that read the same
# input pixel are summed into one tap of the phase's kernel
_PHASE = torch.tensor([[[1., 0, 0], [0, 1, 1], [0, 0, 0]],
                       [[0., 0, 0], [1, 1, 0], [0, 0, 1]]])


class ResizeConv(nn.Module):
    """Upsampling by nearest-neighbour resize, then a 3x3 convolution with replicate padding (no zero rim).

    A side exactly doubled is computed without the upsampled frame (sub-pixel convolution, Aitken et al.
    2017): each of the four output phases is a 3x3 convolution of the input whose kernel sums the taps
    that read the same input pixel, then ``pixel_shuffle`` interleaves them. The same values to float
    rounding and the same parameters; 2.5x faster than resizing on CPU, where nearest resize of a 4-D
    tensor costs more than the convolution after it. On a GPU the resize is cheap and the phase kernels'
    extra launches are not: there resize + convolution is 2.4-3.5x faster at batches of 64-256
    (``benchmarks/GPU.md``), so it is used there."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, padding_mode="replicate")
        # a buffer, so it moves with the model: a host tensor copied to the GPU every call made each one wait
        self.register_buffer("phase", _PHASE.clone(), persistent=False)

    def forward(self, x: torch.Tensor, output_size: list[int]) -> torch.Tensor:
        if x.device.type != "cpu" or list(output_size) != [2 * x.shape[-2], 2 * x.shape[-1]]:
            return self.conv(F.interpolate(x, size=list(output_size), mode="nearest"))
        w, phase = self.conv.weight, self.phase.to(self.conv.weight.dtype)
        w4 = torch.einsum("aoy,bpx,ciyx->cabiop", phase, phase, w).reshape(4 * w.shape[0], *w.shape[1:])
        y = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), w4, self.conv.bias.repeat_interleave(4))
        return F.pixel_shuffle(y, 2)


def upsampling_layer(kind: str, in_channels: int, out_channels: int) -> nn.Module:
    """One decoder layer that doubles the side (``layer(x, output_size=[h, w])``); ``kind`` in UPSAMPLE."""
    if kind == "resize":
        return ResizeConv(in_channels, out_channels)
    if kind == "transpose":
        return nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1)
    raise ValueError(f"unknown upsample {kind!r}; expected one of {UPSAMPLE}")


class ConvVAE(nn.Module):
    def __init__(self, in_channels: int, size: int, channels: list[int], latent_dim: int,
                 upsample: str = "resize", encoder_slope: float = 0.2):
        super().__init__()
        self.encoder_slope = encoder_slope
        if size >> len(channels) < 1:
            raise ValueError(f"{len(channels)} stride-2 layers shrink a {size}-pixel input below 1 pixel; "
                             "use fewer train.vae.channels")
        self.sizes = [size]
        for _ in channels:
            self.sizes.append(self.sizes[-1] // 2)
        widths = [in_channels, *channels]
        self.enc = nn.ModuleList(nn.Conv2d(a, b, 4, stride=2, padding=1) for a, b in zip(widths, widths[1:]))
        flat = channels[-1] * self.sizes[-1] ** 2
        self.mu = nn.Linear(flat, latent_dim)
        self.logvar = nn.Linear(flat, latent_dim)
        self.expand = nn.Linear(latent_dim, flat)
        self.dec = nn.ModuleList(upsampling_layer(upsample, b, a)
                                 for a, b in reversed(list(zip(widths, widths[1:]))))
        self.last_channels = channels[-1]
        # mean squared residual of each pixel over the training frames (set after training): scoring divides
        # by it, so an error counts by how unusual it is at that place, not by how much signal is there
        self.register_buffer("residual_scale", torch.ones(in_channels, size, size))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar), each (N, latent_dim)."""
        for conv in self.enc:
            x = F.leaky_relu(conv(x), self.encoder_slope)
        x = torch.flatten(x, 1)
        return self.mu(x), self.logvar(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Frames (N, C, size, size) from latents (N, latent_dim)."""
        s = self.sizes[-1]
        x = self.expand(z).view(-1, self.last_channels, s, s)
        for i, deconv in enumerate(self.dec):
            target = self.sizes[-2 - i]
            x = deconv(x, output_size=[target, target])
            if i < len(self.dec) - 1:
                x = F.relu(x)
        return x

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(reconstruction, mu, logvar); samples z in training mode, uses z = mu in eval mode."""
        mu, logvar = self.encode(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu) if self.training else mu
        return self.decode(z), mu, logvar


@torch.no_grad()
def pixel_residual_scale(model: ConvVAE, batches, device: torch.device) -> torch.Tensor:
    """Mean squared reconstruction residual (C, H, W) of every channel and pixel over ``batches`` (dicts
    with ``x`` (N, C, H, W) and ``valid`` (N, H, W)); masked pixels are left out, distributed ranks summed.
    A pixel that is never unmasked gets its channel's overall mean."""
    model.eval()
    total = count = None
    for b in batches:
        x, valid = b["x"].to(device).float(), b["valid"].to(device)
        mask = (valid >= 0.5).float()[:, None]
        se = (x - model(x)[0].float()) ** 2 * mask
        s = se.sum(0)
        c = mask.sum(0).expand_as(s)
        total, count = (s, c) if total is None else (total + s, count + c)
    if total is None:
        return torch.ones_like(model.residual_scale)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(total)
        torch.distributed.all_reduce(count)
    overall = total.sum((1, 2), keepdim=True) / count.sum((1, 2), keepdim=True).clamp(min=1.0)
    scale = torch.where(count > 0, total / count.clamp(min=1.0), overall.expand_as(total))
    return torch.maximum(scale, 1e-3 * overall + 1e-12)  # a pixel that is always perfect must not divide by 0


def active_units(z: np.ndarray, threshold: float) -> np.ndarray:
    """The columns of the latent means (N, D) whose variance over the frames exceeds ``threshold``.

    A dimension whose posterior mean hardly moves from frame to frame carries nothing about the frame
    (Burda, Grosse & Salakhutdinov 2016 count a unit active above 0.01). Distances over such dimensions are
    numerical noise, which a tail calibration would rank as surprise: a VAE whose encoder had a dead layer
    (no unit positive on any frame, so the same posterior for every frame) gave three quarters of a run one
    identical distance and its rounding errors the highest surprise of the run."""
    return z[:, z.var(axis=0) > threshold] if len(z) > 1 else z[:, :0]


@torch.no_grad()
def latent_means(model: ConvVAE, batches, device: torch.device) -> np.ndarray:
    """The posterior means (N, latent_dim) of the frames of ``batches`` (dicts with ``x``)."""
    model.eval()
    mus = [model.encode(b["x"].to(device).float())[0].float().cpu() for b in batches]
    return torch.cat(mus).numpy().astype(np.float64) if mus else np.zeros((0, model.mu.out_features))


def active_dims(model: ConvVAE, batches, device: torch.device, threshold: float) -> int | None:
    """How many of the latent dimensions are active (:func:`active_units`) over the frames of ``batches``
    (None with fewer than two frames); warns when none is: the encoder gives every frame the same
    posterior (collapsed onto the prior, or an encoder layer that ignores its input)."""
    z = latent_means(model, batches, device)
    if len(z) < 2:
        return None
    n = active_units(z, threshold).shape[1]
    if n == 0:
        log.warning("vae: no latent dimension varies over the validation frames (score.latent_active %g): the "
                    "encoder gives every frame the same posterior (collapsed onto the prior: too few frames or "
                    "steps, or nothing in them the VAE found worth encoding), so latent_knn, denoise and generate "
                    "carry nothing about the frames", threshold)
    return n


def _masked_mse(x: torch.Tensor, recon: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return ((recon - x) ** 2 * mask).sum(dim=(1, 2)) / mask.sum(dim=(1, 2)).clamp(min=1.0)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per sample: -1/2 sum(1 + logvar - mu^2 - exp(logvar))."""
    return -0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum(dim=1)


def vae_terms(x: torch.Tensor, recon: torch.Tensor, valid: torch.Tensor, mu: torch.Tensor,
              logvar: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-sample (N,) terms: masked MSE of intensity (channel 0) and Sobel (channel 1), and the KL.

    ``valid`` (N, H, W) is the fraction of unmasked input pixels; pixels below 0.5 are ignored.
    """
    x, recon = x.float(), recon.float()
    mask = (valid >= 0.5).float()
    return {"recon": _masked_mse(x[:, 0], recon[:, 0], mask),
            "recon_sobel": _masked_mse(x[:, 1], recon[:, 1], mask),
            "kl": kl_divergence(mu.float(), logvar.float())}


def vae_loss(x: torch.Tensor, recon: torch.Tensor, valid: torch.Tensor, mu: torch.Tensor,
             logvar: torch.Tensor, beta: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Batch-mean training loss and the batch-mean terms for logging (see the module docstring)."""
    mask = (valid >= 0.5).float()[:, None]
    sse = (((recon.float() - x.float()) ** 2) * mask).sum(dim=(1, 2, 3))
    terms = vae_terms(x, recon, valid, mu, logvar)
    loss = (sse + beta * terms["kl"]).mean()
    return loss, {k: v.mean() for k, v in terms.items()}


class VAEObjective:
    """What training the VAE means: reconstruct the (augmented) frames; the KL weight is warmed up.

    ``train_loss`` gives the loss of a training batch and its terms, ``val_batch`` the summed metrics of a
    validation batch (with the full beta), its sample count and no (true, predicted) pairs.
    """
    mode = "vae"
    terms = ["recon", "recon_sobel", "kl"]
    transforms: list = []
    n_classes = 0

    def __init__(self, cfg: Config):
        self.augment, self.beta, self.warmup = cfg.augment, cfg.train.vae.beta, cfg.train.vae.kl_warmup_epochs
        a = cfg.augment
        self.augments = a.hflip or a.vflip or a.rot90 or a.translate > 0
        self.kl_scale = 1.0  # training KL weight = beta * kl_scale (set per step during the KL warm-up)

    def set_progress(self, epochs_done: float) -> None:
        """KL warm-up: the training KL weight rises linearly to beta over ``kl_warmup_epochs``."""
        self.kl_scale = min(1.0, epochs_done / self.warmup) if self.warmup > 0 else 1.0

    def train_loss(self, model: nn.Module, b: dict, gen: torch.Generator) -> tuple[torch.Tensor, dict]:
        x, valid = b["x"], b["valid"]
        if self.augments:  # the valid map moves with the frame
            xv = random_augment(torch.cat([x, valid[:, None]], 1), self.augment, gen)
            x, valid = xv[:, :-1], xv[:, -1]
        recon, mu, logvar = model(x)
        return vae_loss(x, recon, valid, mu, logvar, self.beta * self.kl_scale)

    @torch.no_grad()
    def val_batch(self, model: nn.Module, b: dict) -> tuple[dict[str, float], int, None]:
        x, valid = b["x"], b["valid"]
        recon, mu, logvar = model(x)
        loss, terms = vae_loss(x, recon, valid, mu, logvar, self.beta)
        n = x.shape[0]
        return {"loss": loss.item() * n, **{k: v.item() * n for k, v in terms.items()}}, n, None
