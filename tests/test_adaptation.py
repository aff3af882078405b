"""Domain adaptation: CIFAR-10-C corruptions against their reference definitions, what AdaBN and TENT may
change, the gradient-reversal layer, a shift that AdaBN measurably repairs, and refused bad input."""

from __future__ import annotations

import colorsys
import copy
import io
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import adaptation as ad
from helpers import data, models, splits, torch_data, torch_train


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """Twelve varied 32x32 images (synthetic patterns, so the test needs no data)."""
    return data.make_synthetic(2, 1, seed=3).x_train[:12]


@pytest.mark.parametrize("name", ad.CORRUPTIONS)
def test_corruptions_are_deterministic_and_keep_shape_dtype_range(images, name):
    first, again = ad.corrupt(images, name, 5, seed=7), ad.corrupt(images, name, 5, seed=7)
    assert first.shape == images.shape and first.dtype == np.uint8
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, images)  # severity 5 always changes something
    if name.endswith("noise"):
        assert not np.array_equal(first, ad.corrupt(images, name, 5, seed=8))  # the seed drives the noise


def test_severity_orders_the_damage(images):
    errors = [np.abs(ad.corrupt(images, "gaussian_noise", s).astype(int) - images).mean() for s in ad.SEVERITIES]
    assert errors == sorted(errors) and errors[-1] > 2 * errors[0]


def test_noise_corruptions_follow_the_reference_formulas():
    grey = np.full((40, 32, 32, 3), 128, dtype=np.uint8)
    noisy = ad.corrupt(grey, "gaussian_noise", 5).astype(float) - 128
    assert abs(noisy.std() / 255 - 0.10) < 0.005  # standard deviation c = 0.10 at severity 5, on [0, 1]
    shot = ad.corrupt(grey, "shot_noise", 5).astype(float) / 255
    assert abs(shot.var() - (128 / 255) / 50) < 0.002  # Poisson(x c) / c has variance x / c, c = 50
    impulse = ad.corrupt(grey, "impulse_noise", 5)
    flipped = impulse != 128
    assert abs(flipped.mean() - 0.07) < 0.01 and set(np.unique(impulse[flipped])) == {0, 255}


def test_contrast_pixelate_and_jpeg_match_their_definitions(images):
    x = images.astype(float) / 255
    means = x.mean(axis=(1, 2), keepdims=True)
    expected = (np.clip((x - means) * 0.15 + means, 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(ad.corrupt(images, "contrast", 5), expected)
    image = Image.fromarray(images[0])
    box = Image.Resampling.BOX
    np.testing.assert_array_equal(ad.corrupt(images, "pixelate", 5)[0],
                                  np.asarray(image.resize((20, 20), box).resize((32, 32), box)))
    stream = io.BytesIO()
    image.save(stream, "JPEG", quality=40)
    np.testing.assert_array_equal(ad.corrupt(images, "jpeg", 5)[0], np.asarray(Image.open(stream).convert("RGB")))


def test_brightness_uses_the_hsv_value_channel_like_colorsys(images):
    x = images[:2].astype(float) / 255
    hsv = np.array([[colorsys.rgb_to_hsv(*pixel) for pixel in row] for image in x for row in image]).reshape(x.shape)
    np.testing.assert_allclose(ad._rgb_to_hsv(x), hsv, atol=1e-9)
    np.testing.assert_allclose(ad._hsv_to_rgb(hsv), x, atol=1e-9)
    hsv[..., 2] = np.clip(hsv[..., 2] + 0.3, 0, 1)
    rgb = np.array([[colorsys.hsv_to_rgb(*pixel) for pixel in row] for image in hsv for row in image]).reshape(x.shape)
    expected = (np.clip(rgb, 0, 1) * 255).astype(np.uint8)
    assert np.abs(ad.corrupt(images[:2], "brightness", 5).astype(int) - expected).max() <= 1  # float rounding only


def test_defocus_blur_is_the_reference_disk_filter_with_reflect_101_borders(images):
    kernel = ad.disk_kernel(1.5, 0.1)
    assert kernel.shape == (17, 17) and abs(kernel.sum() - 1) < 1e-9
    x = images[0].astype(float) / 255
    padded = np.pad(x, ((8, 8), (8, 8), (0, 0)), mode="reflect")  # numpy's "reflect" is OpenCV's reflect-101
    loops = np.zeros_like(x)
    for i in range(32):
        for j in range(32):
            loops[i, j] = (padded[i:i + 17, j:j + 17] * kernel[..., None]).sum((0, 1))
    expected = (np.clip(loops, 0, 1) * 255).astype(np.uint8)
    assert np.abs(ad.corrupt(images[:1], "defocus_blur", 5)[0].astype(int) - expected).max() <= 1  # rounding only


def test_bad_corruptions_and_severities_list_the_valid_values(images):
    with pytest.raises(ValueError, match="valid corruptions: gaussian_noise, shot_noise"):
        ad.corrupt(images, "fog", 3)
    with pytest.raises(ValueError, match="one of 1, 2, 3, 4, 5"):
        ad.corrupt(images, "contrast", 6)


def _bn_buffers(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Running statistics of every BatchNorm layer."""
    return {k: v.clone() for k, v in model.state_dict().items() if "running" in k}


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter."""
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def test_adabn_changes_only_batchnorm_statistics(images):
    model = models.course_net()
    adapted = ad.adabn(model, ad.corrupt(images, "contrast", 5), batch_size=4)
    for name, before in _weights(model).items():
        torch.testing.assert_close(dict(adapted.named_parameters())[name].detach(), before)
    before = _bn_buffers(model)
    changed = [k for k, v in _bn_buffers(adapted).items() if "num_batches" not in k and not torch.equal(v, before[k])]
    assert len(changed) == 2 * len(ad.batchnorm_layers(model))  # every mean and every variance


def _affine(model: torch.nn.Module, kinds: tuple[type, ...]) -> set[str]:
    """Names of the scale and shift of the model's BatchNorm layers of the given kinds."""
    return {f"{name}.{p}" for name, m in model.named_modules() if isinstance(m, kinds) for p in ("weight", "bias")}


@pytest.mark.parametrize("layers", [(torch.nn.BatchNorm2d,), (torch.nn.BatchNorm2d, torch.nn.BatchNorm1d)])
def test_tent_updates_only_the_chosen_batchnorm_scale_and_shift(images, layers):
    model = models.course_net()
    adapted, probs = ad.tent(model, ad.corrupt(images, "contrast", 5), batch_size=4, steps=2, lr=0.1, layers=layers)
    affine = _affine(model, layers)
    after = dict(adapted.named_parameters())
    for name, before in _weights(model).items():
        assert torch.equal(after[name].detach(), before) != (name in affine), name
    assert probs.shape == (len(images), 5) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert ("features.norm.weight" in affine) == (torch.nn.BatchNorm1d in layers)  # the reference leaves it alone


def test_tent_returns_the_last_steps_predictions_and_norm_updates_nothing(images):
    """Like the reference: with k steps per batch, the k-th forward pass (before the k-th update) is returned."""
    model = models.course_net().eval()
    target = ad.corrupt(images[:4], "contrast", 5)
    one_step, first = ad.tent(model, target, batch_size=4, steps=1, lr=0.1)
    _, second = ad.tent(model, target, batch_size=4, steps=2, lr=0.1)
    order = ad.test_stream(len(target))
    with torch.no_grad():  # the second step's forward pass is the model after one update
        expected = one_step(next(ad.image_batches(target[order], 4, torch.device("cpu")))).softmax(1).numpy()
    np.testing.assert_allclose(second[order], expected, atol=1e-5)
    assert not np.allclose(first, second, atol=1e-4)
    batch_stats = ad.norm(model, target, batch_size=4)
    np.testing.assert_allclose(batch_stats, first, atol=1e-5)  # TENT predicts a batch before updating on it
    with pytest.raises(ValueError, match="no BatchNorm layer"):
        ad.tent(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3072, 5)), target)


def test_gradient_reversal_negates_and_scales_the_gradient():
    x = torch.randn(5, 3, requires_grad=True)
    weights = torch.randn(5, 3)
    (ad.grad_reverse(x, 0.3) * weights).sum().backward()
    torch.testing.assert_close(x.grad, -0.3 * weights)
    torch.testing.assert_close(ad.grad_reverse(x, 0.3), x)
    assert ad.dann_lambda(0) == 0 and 0.99 < ad.dann_lambda(1) < 1


def test_dann_step_matches_skada_reversal_and_domain_loss():
    """Notebook 07's DANN domain loss and reversal against skada's (GradientReversalLayer, DANNLoss)."""
    skada_modules = pytest.importorskip("skada.deep.modules")
    from skada.deep import DANNLoss

    torch.manual_seed(0)
    features = torch.randn(8, 6, requires_grad=True)
    reference = features.detach().clone().requires_grad_()
    discriminator = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    domain = torch.cat([torch.zeros(4), torch.ones(4)])  # source first, then target, as in train_dann
    ours = torch.nn.functional.binary_cross_entropy_with_logits(
        discriminator(ad.grad_reverse(features, 0.7)).squeeze(1), domain)
    ours.backward()
    probs = torch.sigmoid(discriminator(skada_modules.GradientReversalLayer.apply(reference, 0.7)).squeeze(1))
    theirs = DANNLoss()(probs[:4], probs[4:])  # a mean over each domain, summed: twice ours for equal halves
    theirs.backward()
    torch.testing.assert_close(2 * ours, theirs)
    torch.testing.assert_close(2 * features.grad, reference.grad)
    # Why the notebook brings its own domain classifier: skada 0.6.0's default one ends with a softmax over a
    # single output, which is 1 for every input, so it passes no gradient back to the features.
    default = skada_modules.DomainClassifier(num_features=6)
    with pytest.warns(UserWarning, match="Implicit dimension"):
        constant = default(features.detach())
    assert torch.equal(constant, torch.ones(8))


def test_proxy_a_distance_is_near_zero_for_one_domain_and_near_two_for_separated_ones():
    rng = np.random.default_rng(0)
    same = rng.normal(size=(400, 8))
    assert ad.proxy_a_distance(same[:200], same[200:]) < 0.3
    assert ad.proxy_a_distance(same[:200], same[200:] + 5) > 1.9


def test_adaptation_refuses_target_labels_and_warns_on_single_images(images):
    model = models.course_net()
    with pytest.raises(ad.TargetLabelsError, match="target images only"):
        ad.adabn(model, (images, np.zeros(len(images))))
    loader = torch_data.make_loader(images, np.zeros(len(images), dtype=int), train=False)
    with pytest.raises(ad.TargetLabelsError):
        ad.tent(model, loader)
    with pytest.warns(UserWarning, match="single image.*batches of 2"):
        ad.adabn(model, images, batch_size=1)


@pytest.mark.slow
def test_adabn_repairs_a_contrast_shift_on_synthetic_data():
    synthetic = data.make_synthetic(300, 60, seed=0)
    source, _ = splits.source_target_split(synthetic)
    torch.manual_seed(0)
    model = models.course_net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loader = torch_data.make_loader(source.x_train, source.y_train, train=True, batch_size=64)
    model.train()
    for _ in range(4):
        for x, y in loader:
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
    model.eval()
    shifted = ad.corrupt(source.x_test, "contrast", 5)
    test = lambda net, imgs: torch_train.evaluate(  # noqa: E731
        net, torch_data.make_loader(imgs, source.y_test, train=False), torch.device("cpu"))["acc"]
    clean, before = test(model, source.x_test), test(model, shifted)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        after = test(ad.adabn(model, shifted), shifted)
    assert clean > 0.5 and before < clean - 0.1  # the shift hurts a model that learned the task (chance 0.2)
    assert after > before + 0.05  # and new statistics repair part of it


def test_sweeps_read_the_notebooks_choices_of_corruption():
    from helpers import sweep

    known = sweep.notebook_parameters(sweep.notebook_path("07_domain_adaptation"))
    assert known["CORRUPTION"]["choices"] == list(ad.CORRUPTIONS)
    with pytest.raises(ValueError, match="CORRUPTION='fog' is not one of"):
        sweep.validate_grid(sweep.notebook_path("07_domain_adaptation"), {"CORRUPTION": ["fog"]})


def test_dann_control_lambda_zero_lets_no_domain_gradient_reach_the_features(images):
    """Notebook 07's train_dann: with adversarial=False the discriminator cannot move the features (lambda = 0)."""
    from notebook_code import notebook_definition

    from helpers import runtime
    from helpers.progress import progress_bar

    labels = np.arange(len(images)) % 5
    namespace = {"np": np, "torch": torch, "nn": torch.nn, "copy": copy, "ad": ad, "runtime": runtime,
                 "progress_bar": progress_bar, "device": torch.device("cpu"), "x_source": images,
                 "y_source": labels, "x_pool_target": ad.corrupt(images, "contrast", 5), "SEED": 0,
                 "torch_data": torch_data}
    notebook_definition("07_domain_adaptation", "batches", namespace)
    train_dann = notebook_definition("07_domain_adaptation", "train_dann", namespace)
    model = models.course_net()

    def features_after(adversarial: bool, discriminator_seed: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(discriminator_seed)  # only the discriminator's initial weights differ
        return {k: v.clone() for k, v in train_dann(model, 3, adversarial=adversarial, lr=0.05,
                                                    batch_size=8).features.state_dict().items()}

    control = [features_after(False, seed) for seed in (1, 2)]
    adversarial = [features_after(True, seed) for seed in (1, 2)]
    assert all(torch.equal(control[0][k], control[1][k]) for k in control[0])
    assert not all(torch.equal(adversarial[0][k], adversarial[1][k]) for k in adversarial[0])
