"""qkernels.torch.datagen: synthetic calibration data from BatchNorm statistics (MCT's data
generation). Every option, the losses against their formulas, determinism, the MCT-name API."""
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="qkernels.torch.datagen needs PyTorch")
from torch import nn  # noqa: E402

from qkernels.torch import datagen as dg  # noqa: E402
from qkernels.torch.datagen import losses as L  # noqa: E402
from qkernels.torch.datagen.pipeline import ImagePipeline, gaussian_kernel, initial_images  # noqa: E402

pytestmark = pytest.mark.torch

@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one thread (two OpenMP threads only wait on each other on a shared machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


UNIT = dict(image_normalization="custom", normalization_mean=(0.0,), normalization_std=(255.0,))


def small_net(cin: int = 1) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(cin, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 5))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def cfg(**kw) -> dg.DataGenConfig:
    base = dict(n_iter=3, batch_size=4, extra_pixels=2, **UNIT)
    base.update(kw)
    return dg.DataGenConfig(**base)


# --- every option -----------------------------------------------------------------------------

OPTIONS = ([("scheduler", m) for m in dg.SchedulerType] + [("output_loss", m) for m in dg.OutputLossType]
           + [("data_init", m) for m in dg.DataInitType] + [("layer_weighting", m) for m in dg.BNLayerWeightingType]
           + [("image_granularity", m) for m in dg.ImageGranularity]
           + [("image_pipeline", m) for m in dg.ImagePipelineType]
           + [("bn_alignment_loss", m) for m in dg.BatchNormAlignemntLossType]
           + [("optimizer", o) for o in ("radam", "adam", "sgd", torch.optim.AdamW)]
           + [("clip_images", False), ("reflection", True), ("input_alignment", False),
              ("extra_pixels", (3, 1)), ("initial_lr", 0.5), ("output_loss_multiplier", 0.0)])


@pytest.mark.parametrize("name,value", OPTIONS, ids=lambda v: str(getattr(v, "name", v)))
def test_every_option_runs_and_is_deterministic(name, value):
    c = cfg(**{name: value})
    r = dg.generate(small_net(), 6, (7, 9), c, seed=3)
    assert r.images.shape == (6, 1, 7, 9) and r.images.dtype == torch.float32
    assert torch.isfinite(r.images).all()
    if c.clip_images and c.image_pipeline is dg.ImagePipelineType.SMOOTHING_AND_AUGMENTATION:
        assert r.images.min() >= 0 and r.images.max() <= 1
    assert len(r.loss) == 3 and all(len(h) == 4 for h in r.history.values())
    assert r.layers == (["image_input"] if c.input_alignment else []) + ["1", "4"]
    again = dg.generate(small_net(), 6, (7, 9), c, seed=3)
    assert torch.equal(r.images, again.images)


@pytest.mark.parametrize("norm", [n for n in dg.ImageNormalizationType if n is not dg.ImageNormalizationType.CUSTOM])
def test_normalizations_set_the_clipping_range(norm):
    r = dg.generate(small_net(3), 4, 8, cfg(image_normalization=norm, n_iter=2), seed=1)
    mean, std = dg.DataGenConfig(image_normalization=norm).normalization()
    mean, std = np.broadcast_to(mean, 3), np.broadcast_to(std, 3)
    for c in range(3):
        lo, hi = (0 - mean[c]) / std[c], (255 - mean[c]) / std[c]
        x = r.images[:, c]
        assert x.min() >= lo - 1e-5 and x.max() <= hi + 1e-5
    if norm is dg.ImageNormalizationType.TORCHVISION:  # the ImageNet range in normalized units
        assert math.isclose((0 - 0.485 * 255) / (0.229 * 255), -2.1179, abs_tol=1e-4)


def test_alignment_loss_falls_on_every_layer():
    from qkernels.torch.reference_models import load

    r = dg.generate(load("resnet"), 32, 8, cfg(n_iter=30, batch_size=16), seed=0)
    for n in r.layers[1:]:
        assert r.history[n][-1] < 0.7 * r.history[n][0], (n, r.history[n][0], r.history[n][-1])
    # the reported final statistics are those of the history's last entry
    k = r.layers.index("stem.1")
    assert math.isclose(float(L.l2_square(r.target_mean["stem.1"], r.target_std["stem.1"],
                                          r.final_mean["stem.1"], r.final_std["stem.1"])),
                        r.history["stem.1"][-1], rel_tol=1e-5)
    assert k == 1


def test_seed_changes_images_and_batches_are_independent():
    net = small_net()
    a = dg.generate_images(net, 8, 6, cfg(image_granularity="BatchWise"), seed=0)
    b = dg.generate_images(net, 8, 6, cfg(image_granularity="BatchWise"), seed=1)
    assert not torch.equal(a, b)
    # with per-batch statistics a batch does not depend on the others: 8 images = 4 + 4
    c = dg.generate_images(net, 4, 6, cfg(image_granularity="BatchWise"), seed=0)
    assert torch.equal(a[:4], c)


def test_model_is_not_modified():
    net = small_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    dg.generate(net, 4, 6, cfg())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert not net.training and all(p.requires_grad for p in net.parameters())


# --- BatchNorm layers anywhere, any input ----------------------------------------------------

class FrozenBN(nn.Module):
    """A user BatchNorm type: fixed statistics, no nn.BatchNorm base class."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.register_buffer("running_mean", torch.linspace(-1, 1, c))
        self.register_buffer("running_var", torch.linspace(0.5, 2, c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return (x - self.running_mean.view(shape)) / torch.sqrt(self.running_var.view(shape) + 1e-5)


def test_batchnorm1d_after_linear_and_a_user_type():
    torch.manual_seed(0)
    net = nn.Sequential(nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2 * 5 * 4, 16), nn.BatchNorm1d(16),
                        nn.ReLU(), nn.Linear(16, 8), FrozenBN(8), nn.Linear(8, 3)).eval()
    with torch.no_grad():
        net[3].running_mean.uniform_(-1, 1)
        net[0].running_mean.fill_(0.5)
        net[0].running_var.fill_(0.25)
    c = cfg(bn_layer_types=(nn.BatchNorm1d, nn.BatchNorm2d, FrozenBN), n_iter=25,
            image_pipeline="identity", output_loss="none", initial_lr=0.2, optimizer="adam")
    with pytest.raises(ValueError, match="channels="):  # no convolution: the channels must be given
        dg.generate(net, 8, (5, 4), c)
    r = dg.generate(net, 8, (5, 4), c, channels=2, seed=0)
    assert r.images.shape == (8, 2, 5, 4)
    assert r.layers == ["image_input", "0", "3", "6"]
    assert r.target_mean["6"].tolist() == pytest.approx(torch.linspace(-1, 1, 8).tolist())
    for n in ("0", "3", "6"):
        assert r.history[n][-1] < r.history[n][0]
    # per-image statistics of a (N, C) activation: each value is its own mean, std sqrt(eps)
    m, q = L.moments(torch.ones(3, 4), per_image=True)
    assert torch.equal(m, torch.ones(3, 4)) and torch.equal(q, torch.ones(3, 4))


def test_unused_batchnorm_layer_is_left_out_with_a_warning():
    class WithHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = small_net()
            self.aux_bn = nn.BatchNorm2d(3)  # an auxiliary head, not called in forward

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(x)
    with pytest.warns(UserWarning, match="aux_bn are not called"):
        r = dg.generate(WithHead().eval(), 4, 6, cfg())
    assert r.layers == ["image_input", "body.1", "body.4"]


def test_batchnorm_without_running_stats_is_refused():
    net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2, track_running_stats=False)).eval()
    with pytest.raises(ValueError, match="'1'.*running_mean"):
        dg.generate(net, 2, 4, cfg())
    with pytest.raises(ValueError, match="at least one layer"):
        dg.generate(nn.Sequential(nn.Conv2d(1, 2, 1)), 2, 4, cfg())


# --- losses, weights, schedules, pipeline: against their formulas ----------------------------

def test_l2_square_and_statistics():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 3, 5, 6, generator=g)
    m, q = L.moments(a, per_image=False)
    assert torch.allclose(m, a.mean((0, 2, 3))) and torch.allclose(q, (a * a).mean((0, 2, 3)))
    std = L.std_from(m, q)
    assert torch.allclose(std, torch.sqrt(a.var((0, 2, 3), unbiased=False) + 1e-6), atol=1e-6)
    tm, ts = torch.tensor([0.1, -0.2, 0.3]), torch.tensor([1.0, 2.0, 0.5])
    want = (np.sum((m.numpy() - tm.numpy()) ** 2) + np.sum((std.numpy() - ts.numpy()) ** 2)) / 3
    assert math.isclose(float(L.l2_square(tm, ts, m, std)), want, rel_tol=1e-6)
    mi, qi = L.moments(a, per_image=True)  # per image: summed over the images
    per = [float(L.l2_square(tm, ts, mi[k], L.std_from(mi[k], qi[k]))) for k in range(4)]
    assert math.isclose(float(L.l2_square(tm, ts, mi, L.std_from(mi, qi))), sum(per), rel_tol=1e-6)


def test_output_losses_formulas():
    out = torch.tensor([[1.0, -2.0, 3.0], [0.5, 0.0, -0.5]])
    diff = torch.tensor([5.0, 1.0])
    assert float(L.output_loss(dg.OutputLossType.NONE, out, [], [])) == 0.0
    assert math.isclose(float(L.output_loss(dg.OutputLossType.NEGATIVE_MIN_MAX_DIFF, out, [], [])), -3.0)
    assert math.isclose(float(L.output_loss(dg.OutputLossType.INVERSE_MIN_MAX_DIFF, out, [], [])),
                        1 / (3.0 + 1e-6), rel_tol=1e-6)
    w = torch.tensor([[3.0, 4.0], [0.0, 1.0], [1.0, 0.0]])  # row norms 5, 1, 1
    x = torch.tensor([[6.0, 8.0], [0.0, 2.0]])               # input norms 10, 2
    n = torch.tensor([10.0, 2.0])
    reg_min = (torch.tensor([2.0, 0.5]) - 0.5 * n * torch.tensor([1.0, 1.0])).abs()
    reg_max = (torch.tensor([3.0, 0.5]) - 0.5 * n * torch.tensor([1.0, 5.0])).abs()
    want = float((reg_min + reg_max + 1 / (diff + 1e-6)).mean())
    got = float(L.output_loss(dg.OutputLossType.REGULARIZED_MIN_MAX_DIFF, out, [x], [w]))
    assert math.isclose(got, want, rel_tol=1e-6)
    with pytest.raises(ValueError, match="last_layer_types"):
        L.output_loss(dg.OutputLossType.REGULARIZED_MIN_MAX_DIFF, out, [], [])


def test_regularized_loss_finds_the_last_linear_layer():
    from qkernels.torch.datagen.engine import _last_layers

    net = small_net()
    assert [n for n, _ in _last_layers(net, (nn.Linear, nn.Conv2d))] == ["8"]
    assert [n for n, _ in _last_layers(net, (nn.Conv2d,))] == ["3"]


def test_layer_weights():
    assert L.static_layer_weights(dg.BNLayerWeightingType.AVERAGE, 4) == [0.25] * 4
    assert L.static_layer_weights(dg.BNLayerWeightingType.FIRST_LAYER_MULTIPLIER, 3) == [10.0, 1.0, 1.0]
    a = torch.randn(2, 3, requires_grad=True)
    b = torch.randn(2, 3, requires_grad=True)
    w = L.grad_layer_weights([(a ** 2).sum(), (3 * b).sum()], [a, b])
    na, nb = float(torch.linalg.vector_norm(2 * a.detach())), float(torch.linalg.vector_norm(torch.full((2, 3), 3.0)))
    assert w == pytest.approx([(1 / na) / (1 / na + 1 / nb), (1 / nb) / (1 / na + 1 / nb)])


def test_schedules():
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=16.0)
    s = L.Schedule(dg.SchedulerType.STEP, opt, n_iter=9)  # x0.1 every 3 steps
    lrs = []
    for _ in range(7):
        s.step(1.0)
        lrs.append(s.lr())
    assert lrs == pytest.approx([16, 16, 1.6, 1.6, 1.6, 0.16, 0.16])
    # plateau: patience n_iter // 50 = 2 steps without improvement, then x0.5
    ref_opt = torch.optim.SGD([p], lr=16.0)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(ref_opt, factor=0.5, patience=2, min_lr=1e-4)
    opt2 = torch.optim.SGD([p], lr=16.0)
    s2 = L.Schedule(dg.SchedulerType.REDUCE_ON_PLATEAU, opt2, n_iter=100)
    losses = [5, 4, 4, 4, 4, 3.9, 3.9, 3.9, 3.9, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
    for v in losses:
        ref.step(v)
        s2.step(v)
        assert s2.lr() == ref_opt.param_groups[0]["lr"]
    # with reset: the best loss is forgotten after a reduction, so a worse loss counts as better
    opt3 = torch.optim.SGD([p], lr=16.0)
    s3 = L.Schedule(dg.SchedulerType.REDUCE_ON_PLATEAU_WITH_RESET, opt3, n_iter=100)
    for v in (5, 5, 5, 5):
        s3.step(v)
    assert s3.lr() == 8.0 and s3.best == float("inf")
    s3.step(6)
    assert s3.best == 6 and s3.bad == 0


def test_pipeline_operations():
    c = cfg(extra_pixels=4)
    pipe = ImagePipeline(c, (5, 6), 2)
    assert pipe.input_size == (9, 10)
    k = gaussian_kernel(3, 1.25)
    ax = torch.tensor([-1.0, 0.0, 1.0])
    want = torch.exp(-(ax[:, None] ** 2 + ax[None] ** 2) / (2 * 1.25 ** 2))
    assert torch.allclose(k, want / want.sum())
    x = torch.randn(3, 2, 9, 10, generator=torch.Generator().manual_seed(0))
    smooth = torch.nn.functional.conv2d(x, k.expand(2, 1, 3, 3), padding=1, groups=2)
    fin = pipe.finalize(x)  # center crop: top 2, left 2; the filter as two 1-D passes (float rounding)
    assert torch.allclose(fin, smooth[:, :, 2:7, 2:8].clamp(0, 1), rtol=0, atol=1e-6)
    outs = {tuple(pipe.augment(x, torch.Generator().manual_seed(s)).flatten()[:3].tolist()) for s in range(12)}
    assert len(outs) > 3   # flips and crops vary with the generator...
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(pipe.augment(x, g1), pipe.augment(x, g2))  # ...and only with it
    # clipping is straight-through: the gradient passes where values were clipped
    xr = (3 * x).requires_grad_(True)
    pipe.augment(xr, torch.Generator().manual_seed(0)).sum().backward()
    assert xr.grad.abs().sum() > 0
    # reflection folds values into [0, 1]: 1.25 -> 0.75, -0.25 -> 0.25
    v = torch.tensor([1.25, -0.25, 0.5, 7.0]).view(1, 1, 2, 2).repeat(1, 2, 1, 1)
    pipe.reflect_(v)
    assert v[0, 0].flatten().tolist() == [0.75, 0.25, 0.5, 0.0]


def test_initial_images():
    g = torch.Generator().manual_seed(0)
    x = initial_images(cfg(data_init="Gaussian"), 64, 1, (16, 16), g)
    assert abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1) < 0.05
    d = initial_images(cfg(data_init="Diverse"), 8, 3, (12, 12), torch.Generator().manual_seed(0))
    assert d.shape == (8, 3, 12, 12)
    per_image = d.mean((1, 2, 3))
    assert float(per_image.std()) > 0.5  # each image its own mean


# --- bad input ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kw,match", [
    (dict(n_iter=0), "n_iter"), (dict(batch_size=0), "batch_size"), (dict(initial_lr=0.0), "initial_lr"),
    (dict(initial_lr=float("nan")), "initial_lr"), (dict(output_loss_multiplier=-1.0), "output_loss_multiplier"),
    (dict(optimizer="lbfgs"), "optimizer"), (dict(scheduler="cosine"), "scheduler"),
    (dict(output_loss="max"), "output_loss"), (dict(data_init="uniform"), "data_init"),
    (dict(layer_weighting="last"), "layer_weighting"), (dict(image_granularity="pixel"), "image_granularity"),
    (dict(image_pipeline="crop"), "image_pipeline"), (dict(image_normalization="imagenet"), "image_normalization"),
    (dict(extra_pixels=-1), "extra_pixels"), (dict(image_normalization="custom", normalization_mean=None), "CUSTOM"),
    (dict(normalization_std=(0.0,)), "normalization_std"), (dict(clip_images=False, reflection=True), "reflection"),
    (dict(bn_layer_types=(int,)), "bn_layer_types"), (dict(bn_alignment_loss="l1"), "bn_alignment_loss"),
])
def test_bad_config(kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        cfg(**kw)


def test_bad_arguments():
    net = small_net()
    with pytest.raises(ValueError, match="n_images"):
        dg.generate(net, 0, 4, cfg())
    with pytest.raises(ValueError, match="output_size"):
        dg.generate(net, 2, 0, cfg())
    with pytest.raises(TypeError, match="output_size"):
        dg.generate(net, 2, (2, 3, 4), cfg())
    with pytest.raises(TypeError, match="model"):
        dg.generate("net", 2, 4, cfg())
    with pytest.raises(ValueError, match="normalization_mean has 2 values"):
        dg.generate(net, 2, 4, cfg(normalization_mean=(0.0, 1.0)))
    class Stats3(nn.Module):  # 3 stored channels, but fed the 1-channel input
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("running_mean", torch.zeros(3))
            self.register_buffer("running_var", torch.ones(3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x
    with pytest.raises(ValueError, match="3 channels on axis 1"):
        dg.generate(nn.Sequential(Stats3()), 2, 4, cfg(bn_layer_types=(Stats3,)), channels=1)
    with pytest.raises(RuntimeError, match="not initialized"):
        dg.generate(net, 2, 4, cfg(), distributed=True)


# --- MCT's names ----------------------------------------------------------------------------------

def test_mct_enum_names_and_values():
    # the members of MCT 2.6.1's model_compression_toolkit/data_generation/common/enums.py
    mct = {dg.ImageGranularity: {"ImageWise": 0, "BatchWise": 1, "AllImages": 2},
           dg.DataInitType: {"Gaussian": 0, "Diverse": 1},
           dg.ImagePipelineType: {"SMOOTHING_AND_AUGMENTATION": "smoothing_and_augmentation", "IDENTITY": "identity"},
           dg.BNLayerWeightingType: {"AVERAGE": "average", "FIRST_LAYER_MULTIPLIER": "first_layer_multiplier",
                                     "GRAD": "grad"},
           dg.BatchNormAlignemntLossType: {"L2_SQUARE": "l2_square"},
           dg.OutputLossType: {"NONE": "none", "NEGATIVE_MIN_MAX_DIFF": "negative_min_max_diff",
                               "INVERSE_MIN_MAX_DIFF": "inverse_min_max_diff",
                               "REGULARIZED_MIN_MAX_DIFF": "regularized_min_max_diff"},
           dg.SchedulerType: {"REDUCE_ON_PLATEAU": "reduce_on_plateau", "STEP": "step",
                              "REDUCE_ON_PLATEAU_WITH_RESET": "reduce_on_plateau_with_reset"}}
    for enum, members in mct.items():
        for name, value in members.items():
            assert enum[name].value == value and enum.get_enum_by_value(value) is enum[name]
    norm = {m.name: m.value for m in dg.ImageNormalizationType}
    assert norm == {"TORCHVISION": "torchvision", "KERAS_APPLICATIONS": "keras_applications",
                    "NO_NORMALIZATION": "no_normalization", "CUSTOM": "custom"}
    # a member of another enum with the same name (as MCT's own) is accepted by name
    import enum as _enum
    Other = _enum.Enum("SchedulerType", {"STEP": "x"})
    assert dg.DataGenConfig(scheduler=Other.STEP).scheduler is dg.SchedulerType.STEP


def test_mct_config_defaults():
    c = dg.get_pytorch_data_generation_config()
    assert (c.n_iter, c.optimizer, c.data_gen_batch_size, c.initial_lr, c.output_loss_multiplier) == \
        (500, torch.optim.RAdam, 32, 16, 1e-5)
    assert c.scheduler_type is dg.SchedulerType.REDUCE_ON_PLATEAU_WITH_RESET
    assert c.bn_alignment_loss_type is dg.BatchNormAlignemntLossType.L2_SQUARE
    assert c.output_loss_type is dg.OutputLossType.NEGATIVE_MIN_MAX_DIFF
    assert c.data_init_type is dg.DataInitType.Gaussian
    assert c.layer_weighting_type is dg.BNLayerWeightingType.AVERAGE
    assert c.image_granularity is dg.ImageGranularity.AllImages
    assert c.image_pipeline_type is dg.ImagePipelineType.SMOOTHING_AND_AUGMENTATION
    assert c.image_normalization_type is dg.ImageNormalizationType.TORCHVISION
    assert c.extra_pixels == 32 and c.bn_layer_types == [nn.BatchNorm2d]
    assert c.last_layer_types == [nn.Linear, nn.Conv2d] and c.image_clipping and c.clip_images
    ours = c.to_config()
    assert ours.bn_layer_types == (nn.BatchNorm2d,) and ours.extra_pixels == (32, 32)
    assert dg.get_pytorch_data_generation_config(clip_images=False).image_clipping is False
    with pytest.raises(ValueError, match="scheduler"):
        dg.get_pytorch_data_generation_config(scheduler_type="cosine")


def test_mct_generate_function_matches_ours():
    net = small_net(3)
    c = dg.get_pytorch_data_generation_config(n_iter=2, data_gen_batch_size=2, extra_pixels=4,
                                              output_loss_type=dg.OutputLossType.REGULARIZED_MIN_MAX_DIFF)
    imgs = dg.pytorch_data_generation_experimental(net, 5, (6, 7), c, progress=False)
    assert len(imgs) == 5 and all(t.shape == (1, 3, 6, 7) for t in imgs)
    ours = dg.generate_images(net, 5, (6, 7), c.to_config(), seed=0)
    assert torch.equal(torch.cat(imgs), ours)


def test_generated_data_calibrates_where_noise_fails():
    """W8A4 on the ResNet-style digits model: N(0, 1) noise calibration loses tens of points,
    generated images (a short run) nearly none (docs/datagen_results.md has the full table)."""
    from qkernels.torch.quantize import QuantConfig, TensorConfig, quantize_model
    from qkernels.torch.reference_models import digits, load

    (xtr, _), (xte, yte) = digits()
    qc = QuantConfig(activation=TensorConfig(bits=4))
    gen = dg.generate_images(load("resnet"), 64, 8, cfg(n_iter=40, batch_size=32), seed=0)
    noise = torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    accs = {}
    for name, data in (("real", xtr[:64]), ("noise", noise), ("generated", gen)):
        im = quantize_model(load("resnet"), [data], config=qc)
        accs[name] = float(np.mean(np.asarray(im(xte)).argmax(1) == yte.numpy()))
    assert accs["noise"] < accs["real"] - 0.2, accs
    assert accs["generated"] > accs["real"] - 0.03, accs


@pytest.mark.parametrize("name", ["qkernels.torch.datagen", "qkernels.torch.datagen.config",
                                  "qkernels.torch.datagen.engine", "qkernels.torch.datagen.mct",
                                  "qkernels.torch.datagen.pipeline", "qkernels.torch.datagen.losses"])
def test_docstring_examples(name):
    import doctest
    import importlib

    mod = importlib.import_module(name)
    tests = doctest.DocTestFinder(exclude_empty=True).find(mod, name)
    assert sum(len(t.examples) for t in tests) > 0, f"{name} has no examples"
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for t in tests:
        runner.run(t)
    assert runner.summarize(verbose=False).failed == 0
