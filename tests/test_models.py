"""Layers against the lecture's hand-computed numbers; CNN and VAE shapes, losses and scores."""
import math

import numpy as np
import pytest
import torch
from torch import nn
import torch.nn.functional as F

from cnnpipe.config import parse
from cnnpipe.models import CNN, ConvVAE, build
from cnnpipe.models.cnn import cnn_score
from cnnpipe import checkpoint
from cnnpipe.models.vae import (active_dims, kl_divergence, latent_means, pixel_residual_scale, upsampling_layer,
                                vae_loss, vae_terms)

X = torch.tensor([[0, 1, 2, 3], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]], dtype=torch.float64)
K = torch.tensor([[3, 5], [2, 2]], dtype=torch.float64)


def _conv() -> nn.Conv2d:
    conv = nn.Conv2d(1, 1, 2, bias=False).double()
    conv.weight.data[:] = K
    return conv


def _conv_t() -> nn.ConvTranspose2d:
    deconv = nn.ConvTranspose2d(1, 1, 2, bias=False).double()
    deconv.weight.data[:] = K
    return deconv


def test_conv2d_reproduces_lecture_example():
    out = _conv()(X[None, None])[0, 0].detach()
    assert out.tolist() == [[27, 39, 51], [55, 59, 63], [25, 21, 17]]


def test_conv_transpose_maps_3x3_to_4x4_by_scattering_the_kernel():
    y = torch.arange(1.0, 10.0, dtype=torch.float64).reshape(3, 3)
    out = _conv_t()(y[None, None])[0, 0].detach()
    expected = np.zeros((4, 4))
    for i in range(3):
        for j in range(3):
            expected[i:i + 2, j:j + 2] += y[i, j].item() * K.numpy()
    assert out.shape == (4, 4)
    np.testing.assert_array_equal(out.numpy(), expected)
    assert out[0, 0].item() == 3.0 and out[3, 3].item() == 18.0  # 1*3 and 9*2


def test_conv_transpose_is_the_adjoint_of_conv():
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        x = torch.randn(1, 1, 4, 4, generator=g, dtype=torch.float64)
        y = torch.randn(1, 1, 3, 3, generator=g, dtype=torch.float64)
        lhs = (_conv()(x) * y).sum()
        rhs = (x * _conv_t()(y)).sum()
        assert lhs.item() == pytest.approx(rhs.item(), rel=1e-12, abs=1e-12)


def _constant_layer(kind: str) -> nn.Module:
    """A 2 -> 1 channel decoder layer with every weight 0.25 and no bias."""
    layer = upsampling_layer(kind, 2, 1).double()
    for name, p in layer.named_parameters():
        nn.init.constant_(p, 0.0 if name.endswith("bias") else 0.25)
    return layer


def test_resize_convolution_maps_a_constant_to_a_constant_up_to_the_borders():
    out = _constant_layer("resize")(torch.ones(1, 2, 4, 4, dtype=torch.float64), output_size=[8, 8])[0, 0]
    # every output pixel sees 2 channels x 3x3 taps of 0.25 on a constant 1, corners and edges included
    np.testing.assert_array_equal(out.detach().numpy(), np.full((8, 8), 2 * 9 * 0.25))


@pytest.mark.parametrize("shape", [(3, 4, 6), (2, 1, 1), (1, 5, 5)])
def test_resize_convolution_equals_resize_then_convolution(shape):
    """The sub-pixel path (a side exactly doubled) gives the values and gradients of nearest resize, then
    the layer's 3x3 replicate-padded convolution, borders and a 1x1 input included."""
    g = torch.Generator().manual_seed(1)
    layer = upsampling_layer("resize", shape[0], 2).double()
    x = torch.randn(4, *shape, generator=g, dtype=torch.float64, requires_grad=True)
    size = [2 * shape[1], 2 * shape[2]]
    fast = layer(x, output_size=size)
    slow = layer.conv(torch.nn.functional.interpolate(x, size=size, mode="nearest"))
    torch.testing.assert_close(fast, slow, rtol=1e-12, atol=1e-12)
    w = torch.randn(fast.shape, generator=g, dtype=torch.float64)
    for a, b in zip(torch.autograd.grad((fast * w).sum(), [x, *layer.parameters()]),
                    torch.autograd.grad((slow * w).sum(), [x, *layer.parameters()])):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    # a side that is not doubled (an odd feature map) takes the resize path
    assert layer(x, output_size=[size[0] + 1, size[1]]).shape[-2:] == (size[0] + 1, size[1])


def test_transposed_convolution_leaves_a_weaker_rim():
    """The old geometry (4x4, stride 2, padding 1): the interior gets 2x2 taps per channel, an edge 2x1,
    a corner 1x1, so a constant input comes out as a frame with a dim rim: the artefact resize removes."""
    out = _constant_layer("transpose")(torch.ones(1, 2, 4, 4, dtype=torch.float64), output_size=[8, 8])[0, 0]
    out = out.detach().numpy()
    np.testing.assert_array_equal(out[1:-1, 1:-1], np.full((6, 6), 2 * 4 * 0.25))
    np.testing.assert_array_equal(out[0, 1:-1], np.full(6, 2 * 2 * 0.25))
    np.testing.assert_array_equal(out[1:-1, -1], np.full(6, 2 * 2 * 0.25))
    assert out[0, 0] == out[-1, -1] == 2 * 1 * 0.25


def test_nearest_resize_has_no_power_at_the_stride_frequency():
    """Nearest-neighbour doubling repeats each value twice, so (-1)^i sums to 0 over every pair: the
    stride-2 (Nyquist) bins of the resized map are exactly 0 for any input; the 3x3 conv that follows is a
    filter, which cannot create a frequency its input lacks (up to the replicate-padded rim)."""
    x = torch.randn(3, 1, 5, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    up = torch.nn.functional.interpolate(x, size=[10, 10], mode="nearest")[:, 0]
    power = torch.fft.fft2(up).abs() ** 2
    assert power[:, 5, :].max() < 1e-20 and power[:, :, 5].max() < 1e-20
    assert power[:, 1:, 1:].sum() > 1.0


def test_vae_refuses_an_unknown_upsampling():
    with pytest.raises(ValueError, match="unknown upsample 'bilinear'"):
        ConvVAE(2, 8, [4], 3, upsample="bilinear")


def test_checkpoint_of_the_old_decoder_is_refused_by_the_default_config_in_one_line(tmp_path):
    """Checkpoints from before ``train.vae.upsample`` existed have no such key and a transposed decoder."""
    cfg = parse({"ingest": {"tile_size": 16, "tile_overlap": 4}, "train": {"vae": {"channels": [4], "latent_dim": 4}}})
    old = {k: v for k, v in checkpoint.expected_config(cfg, "vae").items() if k != "upsample"}
    model = ConvVAE(old["in_channels"], old["size"], old["channels"], old["latent_dim"], upsample="transpose")
    checkpoint.save(tmp_path / "old.pt", model, old, {})
    with pytest.raises(checkpoint.CheckpointError) as err:
        checkpoint.load_model(tmp_path / "old.pt", expected=checkpoint.expected_config(cfg, "vae"))
    msg = str(err.value)
    assert "\n" not in msg and "upsample: checkpoint 'transpose' vs config 'resize'" in msg
    # with the old geometry asked for, the same file loads and decodes
    cfg_t = parse({**cfg.raw, "train": {"vae": {**cfg.raw["train"]["vae"], "upsample": "transpose"}}})
    loaded, meta = checkpoint.load_model(tmp_path / "old.pt", expected=checkpoint.expected_config(cfg_t, "vae"))
    assert isinstance(loaded.dec[0], nn.ConvTranspose2d) and meta["model"]["upsample"] == "transpose"
    assert loaded.decode(torch.zeros(1, 4)).shape == (1, cfg.channels, old["size"], old["size"])


def test_checkpoint_of_the_relu_encoder_is_refused_by_the_default_config_and_loads_as_relu(tmp_path):
    """Checkpoints from before ``train.vae.encoder_slope`` were trained with a plain ReLU encoder: the default
    config (leaky, 0.2) refuses them in one line instead of running their weights through another
    activation; asked for slope 0 the same file loads and encodes exactly as a ReLU encoder."""
    cfg = parse({"ingest": {"tile_size": 16, "tile_overlap": 4}, "train": {"vae": {"channels": [4, 8], "latent_dim": 4}}})
    old = {k: v for k, v in checkpoint.expected_config(cfg, "vae").items() if k != "encoder_slope"}
    torch.manual_seed(0)
    model = ConvVAE(old["in_channels"], old["size"], old["channels"], old["latent_dim"], upsample=old["upsample"])
    checkpoint.save(tmp_path / "old.pt", model, old, {})
    with pytest.raises(checkpoint.CheckpointError) as err:
        checkpoint.load_model(tmp_path / "old.pt", expected=checkpoint.expected_config(cfg, "vae"))
    msg = str(err.value)
    assert "\n" not in msg and "encoder_slope: checkpoint 0.0 vs config 0.2" in msg
    cfg0 = parse({**cfg.raw, "train": {"vae": {**cfg.raw["train"]["vae"], "encoder_slope": 0.0}}})
    loaded, _ = checkpoint.load_model(tmp_path / "old.pt", expected=checkpoint.expected_config(cfg0, "vae"))
    x = torch.randn(5, cfg.channels, old["size"], old["size"])
    h = x
    for conv in model.enc:
        h = F.relu(conv(h))
    with torch.no_grad():
        assert torch.equal(loaded.encode(x)[0], model.mu(torch.flatten(h, 1)))


@pytest.mark.parametrize("upsample", ["resize", "transpose"])
@pytest.mark.parametrize("size,channels,in_ch", [(32, [32, 64, 128], 2), (17, [8, 16], 3), (8, [4, 4, 4], 2)])
def test_vae_output_shape_equals_input_shape(size, channels, in_ch, upsample):
    vae = ConvVAE(in_ch, size, channels, latent_dim=5, upsample=upsample)
    x = torch.randn(3, in_ch, size, size)
    recon, mu, logvar = vae(x)
    assert recon.shape == x.shape and mu.shape == (3, 5) and logvar.shape == (3, 5)
    assert vae.decode(torch.zeros(2, 5)).shape == (2, in_ch, size, size)


def test_vae_for_default_config_sizes():
    cfg = parse({})
    vae = build({"kind": "vae", "in_channels": cfg.channels, "size": cfg.feature_size,
                 "channels": cfg.train.vae.channels, "latent_dim": cfg.train.vae.latent_dim})
    x = torch.rand(2, cfg.channels, cfg.feature_size, cfg.feature_size)
    assert vae(x)[0].shape == (2, 2, 32, 32)


def test_vae_too_deep_for_size_is_refused():
    with pytest.raises(ValueError, match="below 1 pixel"):
        ConvVAE(2, 8, [4, 4, 4, 4], 3)


def test_kl_is_zero_for_standard_normal_posterior_and_positive_otherwise():
    z = torch.zeros(4, 16)
    assert kl_divergence(z, z).tolist() == [0.0] * 4
    kl = kl_divergence(torch.ones(1, 2), torch.zeros(1, 2))
    assert kl.item() == pytest.approx(1.0)  # 1/2 * sum(mu^2) = 1/2 * 2


def test_vae_terms_ignore_masked_pixels():
    x = torch.zeros(2, 2, 4, 4)
    recon = torch.zeros(2, 2, 4, 4)
    valid = torch.ones(2, 4, 4)
    recon[0, 0, 0, 0] = 100.0   # huge error on a masked pixel of sample 0 ...
    valid[0, 0, 0] = 0.25
    recon[1, 1, 2, 2] = 2.0     # ... and a counted error on sample 1's Sobel channel
    t = vae_terms(x, recon, valid, torch.zeros(2, 3), torch.zeros(2, 3))
    assert t["recon"].tolist() == [0.0, 0.0]
    assert t["recon_sobel"][1].item() == pytest.approx(4.0 / 16)
    assert t["kl"].tolist() == [0.0, 0.0]
    loss, _ = vae_loss(x, recon, valid, torch.zeros(2, 3), torch.zeros(2, 3), beta=1.0)
    assert loss.item() == pytest.approx(4.0 / 2)  # summed squared error, batch mean


def _zero_vae() -> ConvVAE:
    """A VAE whose every weight and bias is 0: it reconstructs every frame as 0, so residual = x^2."""
    vae = ConvVAE(2, 4, [2], latent_dim=2)
    for p in vae.parameters():
        p.data.zero_()
    return vae


def test_pixel_residual_scale_is_the_mean_squared_residual_of_each_pixel_over_unmasked_frames():
    x1, x2 = torch.ones(1, 2, 4, 4), torch.full((1, 2, 4, 4), 3.0)
    x2[0, 1, 0, 0] = 5.0
    v1, v2 = torch.ones(1, 4, 4), torch.ones(1, 4, 4)
    v2[0, 3, 3] = 0.0   # masked in the second frame: only the first frame's residual counts there
    scale = pixel_residual_scale(_zero_vae(), [{"x": x1, "valid": v1}, {"x": x2, "valid": v2}], torch.device("cpu"))
    assert scale.shape == (2, 4, 4)
    assert scale[0, 1, 1].item() == pytest.approx((1 + 9) / 2)
    assert scale[1, 0, 0].item() == pytest.approx((1 + 25) / 2)
    assert scale[:, 3, 3].tolist() == pytest.approx([1.0, 1.0])


def test_scoring_divides_each_residual_by_its_pixel_scale():
    from cnnpipe.score import model_components

    vae, cnn = _zero_vae(), CNN(2, 4, [2], hidden=4, n_classes=2)
    x, valid = torch.full((1, 2, 4, 4), 2.0), torch.ones(1, 4, 4)
    settings = parse({"score": {"top_fraction": 1 / 16}}).score
    x[0, 0, 1, 2] = 6.0                     # the worst intensity residual: 36 ...
    before = model_components(vae, cnn, {"mode": "supervised"}, x, valid, settings)
    vae.residual_scale[0, 1, 2] = 9.0       # ... is usual at that pixel: it now counts 36 / 9 = 4
    after = model_components(vae, cnn, {"mode": "supervised"}, x, valid, settings)
    assert before["recon"][0] == pytest.approx(36.0) and after["recon"][0] == pytest.approx(4.0)
    assert before["recon_sobel"][0] == after["recon_sobel"][0] == pytest.approx(4.0)


def test_cnn_shapes_from_lenet_to_alexnet_depth():
    lenet = CNN(2, 32, [6, 16], hidden=84, n_classes=10)
    x = torch.randn(3, 2, 32, 32)
    assert lenet(x).shape == (3, 10) and lenet.features(x).shape == (3, 84)
    alex = CNN(2, 32, [8, 16, 24, 24, 16, 16], hidden=32, n_classes=8)  # more blocks than halvings
    assert alex(x).shape == (3, 8)
    assert sum(isinstance(m, nn.MaxPool2d) for m in alex.blocks) == 5


def test_cnn_score_of_an_uninformed_model():
    """Zero logits: every transform is equally likely, score = log K; supervised score = -1/K."""
    model = CNN(2, 8, [4], hidden=4, n_classes=4)
    nn.init.zeros_(model.head.weight)
    nn.init.zeros_(model.head.bias)
    x = torch.randn(5, 2, 8, 8)
    meta = {"mode": "self-supervised", "transforms": [[k, 0, 0, 0] for k in range(4)]}
    assert torch.allclose(cnn_score(model, x, meta), torch.full((5,), math.log(4)))
    assert torch.allclose(cnn_score(model, x, {"mode": "supervised"}), torch.full((5,), -0.25))


def test_cnn_score_is_low_when_the_transform_is_recognised():
    """A 'model' that reads the rotation off a marker pixel scores ~0; with the marker erased it scores high."""
    class Oracle(nn.Module):
        def forward(self, x):
            corners = torch.stack([x[:, 0, 0, 0], x[:, 0, -1, 0], x[:, 0, -1, -1], x[:, 0, 0, -1]], 1)
            return 50.0 * corners  # where the top-left marker sits after k counter-clockwise quarter turns
    x = torch.zeros(2, 1, 6, 6)
    x[0, 0, 0, 0] = 1.0
    meta = {"mode": "self-supervised", "transforms": [[k, 0, 0, 0] for k in range(4)]}
    s = cnn_score(Oracle(), x, meta)
    assert s[0].item() < 1e-6 and s[1].item() == pytest.approx(math.log(4))


def test_active_dims_sees_an_encoder_that_gives_every_frame_the_same_posterior(caplog):
    """The posterior means vary over the frames for a working encoder and not at all once a layer ignores its
    input, which training then reports (summary ``active_latent_dims`` 0 and a
    warning)."""
    torch.manual_seed(0)
    vae = ConvVAE(2, 32, [8, 16], 4)
    x = torch.randn(40, 2, 32, 32)
    batches = [{"x": x[:25]}, {"x": x[25:]}]
    cpu = torch.device("cpu")
    live = latent_means(vae, batches, cpu)
    with torch.no_grad():
        np.testing.assert_allclose(live, vae.encode(x)[0].numpy(), rtol=1e-6)
    assert (live.var(axis=0) > 0).all()
    assert active_dims(vae, batches, cpu, 0.0) == 4 and "same posterior" not in caplog.text
    with torch.no_grad():
        vae.enc[-1].weight.zero_()   # the last encoder layer ignores its input: every frame, one posterior
    assert np.array_equal(latent_means(vae, batches, cpu).var(axis=0), np.zeros(4))
    assert active_dims(vae, batches, cpu, 0.0) == 0 and "same posterior" in caplog.text
    assert active_dims(vae, [{"x": x[:1]}], cpu, 0.0) is None     # one frame has no variance to measure


def test_encoder_layer_pushed_negative_everywhere_still_learns():
    """A ReLU layer with no unit positive on any frame passes no gradient and never recovers (the suite's
    sky, detector and 6-vs-9 runs: 11 of 18 had no active latent dimension); the encoder's leaky ReLU still
    passes one, so the posterior still depends on the frame."""
    torch.manual_seed(0)
    vae = ConvVAE(2, 32, [8, 16], 4)
    with torch.no_grad():
        vae.enc[-1].bias.fill_(-1e3)
    x = torch.randn(8, 2, 32, 32)
    mu, _ = vae.encode(x)
    assert mu.var(dim=0).min() > 0
    mu.sum().backward()
    assert vae.enc[0].weight.grad.abs().max() > 0 and vae.enc[-1].weight.grad.abs().max() > 0
