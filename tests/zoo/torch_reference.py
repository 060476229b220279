"""torchvision's ResNets and VGGs written here in plain `torch.nn` (torchvision does
not install beside this torch), with torchvision's module names so that their
state dicts are torchvision's; and the random state every parity test starts from.

The same networks are the PyTorch references of `benchmarks/bench_models.py`, so
they also take the zoo's CIFAR stem (`stem="cifar"`), its global-average-pooling
VGG head (`head="gap"`) and an "aps" variant: `APS`, adaptive polyphase sampling
(Chaman & Dokmanic, 2021), where the baseline subsamples, placed as the zoo's
`variant="aps"` places `PolyphaseDown2D` (see `zoo.blocks.Builder`).

Needs torch. A test reference: it lives with the tests and is not in the wheel.
"""

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from keras_shiftinv.filters import binomial_filter, blur_padding

RESNET_LAYERS = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
}
VGG_CONFIGS = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg13": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (
        *(64, 64, "M", 128, 128, "M", 256, 256, 256, "M"),
        *(512, 512, 512, "M", 512, 512, 512, "M"),
    ),
}


VARIANTS = ("baseline", "aps")


def _conv(cin, cout, kernel_size, stride=1):
    return nn.Conv2d(cin, cout, kernel_size, stride, kernel_size // 2, bias=False)


class Blur(nn.Module):
    """The binomial blur of `filt_size` taps at stride 1, zero-padded as the zoo's
    blurs (`keras_shiftinv.filters.blur_padding`), channel by channel."""

    def __init__(self, channels, filt_size):
        super().__init__()
        row = torch.tensor(binomial_filter(filt_size), dtype=torch.float32)
        self.register_buffer(
            "filt", torch.outer(row, row)[None, None].repeat(channels, 1, 1, 1)
        )
        before, after = blur_padding(filt_size)
        self.padding = (before, after, before, after)

    def forward(self, x):
        return F.conv2d(F.pad(x, self.padding), self.filt, groups=x.shape[1])


def polyphase_components(x):
    """The four polyphase components `x[:, :, i::2, j::2]` of a stride 2 (index
    `2 * i + j`) stacked on axis 1: shape (N, 4, C, ceil(H / 2), ceil(W / 2)); odd
    sizes are zero-padded at the bottom/right."""
    x = F.pad(x, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2))
    return torch.stack([x[:, :, i::2, j::2] for i in (0, 1) for j in (0, 1)], 1)


def take(components, index):
    """Each image's component `index[n]` of `polyphase_components`."""
    return components[torch.arange(len(index), device=index.device), index]


class APS(nn.Module):
    """Adaptive polyphase sampling at stride 2 (Chaman & Dokmanic, 2021): of the
    four polyphase components, keeps for each image the one whose l2 norm over
    (C, H, W) is largest (the first one on ties). A circular shift of the input
    permutes the components and rolls each of them, so the same one wins: the
    output is a circular shift of the unshifted output.

    `filt_size > 1` blurs first (the zoo's `PolyphaseDown2D(filt_size=...)`).
    `select` also returns the chosen index, to sample a shortcut at the same
    component with `gather`.
    """

    def __init__(self, channels, filt_size=1):
        super().__init__()
        self.blur = Blur(channels, filt_size) if filt_size > 1 else nn.Identity()

    def select(self, x):
        components = polyphase_components(self.blur(x))
        with torch.no_grad():
            norms = torch.linalg.vector_norm(components.flatten(2), dim=2)
        index = norms.argmax(1)
        return take(components, index), index

    def gather(self, x, index):
        return take(polyphase_components(self.blur(x)), index)

    def forward(self, x):
        return self.select(x)[0]


class _Block(nn.Module):
    """A residual block: `forward` runs `branch` (which returns the block's output
    before the sum, and the APS index or None) and the shortcut."""

    def _init_shortcut(self, cin, cout, stride, filt_size):
        self.downsample = None
        if stride != 1 or cin != cout:
            # "aps": the shortcut samples the block input at the block's own
            # component (blur at stride 1, gather), then the 1x1 conv at stride 1.
            self.shortcut_down = None if filt_size is None else APS(cin, filt_size)
            stride = stride if filt_size is None else 1
            self.downsample = nn.Sequential(
                _conv(cin, cout, 1, stride), nn.BatchNorm2d(cout)
            )

    def _unit(self, conv, bn, h):
        """conv, BN, ReLU, then APS when the block is strided in "aps"."""
        h = torch.relu(bn(conv(h)))
        return self.down.select(h) if self.down is not None else (h, None)

    def forward(self, x):
        h, index = self.branch(x)
        if self.downsample is not None:
            if index is not None:
                x = self.shortcut_down.gather(x, index)
            x = self.downsample(x)
        return torch.relu(h + x)


class BasicBlock(_Block):
    expansion = 1

    def __init__(self, cin, width, stride, filt_size=None):
        """`filt_size`: None for torchvision's block, else that of "aps"."""
        super().__init__()
        aps = filt_size is not None and stride != 1
        self.conv1 = _conv(cin, width, 3, 1 if aps else stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.down = APS(width, filt_size) if aps else None
        self.conv2 = _conv(width, width, 3)
        self.bn2 = nn.BatchNorm2d(width)
        self._init_shortcut(cin, width, stride, filt_size)

    def branch(self, x):
        h, index = self._unit(self.conv1, self.bn1, x)
        return self.bn2(self.conv2(h)), index


class Bottleneck(_Block):
    expansion = 4

    def __init__(self, cin, width, stride, filt_size=None):
        super().__init__()
        aps = filt_size is not None and stride != 1
        self.conv1 = _conv(cin, width, 1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv(width, width, 3, 1 if aps else stride)  # "ResNet v1.5"
        self.bn2 = nn.BatchNorm2d(width)
        self.down = APS(width, filt_size) if aps else None
        self.conv3 = _conv(width, 4 * width, 1)
        self.bn3 = nn.BatchNorm2d(4 * width)
        self._init_shortcut(cin, 4 * width, stride, filt_size)

    def branch(self, x):
        h = torch.relu(self.bn1(self.conv1(x)))
        h, index = self._unit(self.conv2, self.bn2, h)
        return self.bn3(self.conv3(h)), index


def _check_variant(variant):
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}. Received: {variant!r}")


class ResNet(nn.Module):
    """torchvision's ResNet `arch`. `stem="cifar"` is the zoo's (3x3/1 conv, no max
    pool); `variant="aps"` downsamples as the zoo's "aps": every strided conv
    (the ImageNet stem's too) runs at stride 1 and is followed by BN, ReLU and
    `APS(filt_size)`, the max pool is dense (stride 1) then `APS`, and the
    projection shortcut takes the block's component (`APS.gather`). The bottleneck
    keeps torchvision's stride on its 3x3 conv."""

    def __init__(
        self, arch, num_classes=1000, stem="imagenet", variant="baseline", filt_size=4
    ):
        super().__init__()
        _check_variant(variant)
        aps = filt_size if variant == "aps" else None
        kind, blocks = RESNET_LAYERS[arch]
        block = BasicBlock if kind == "basic" else Bottleneck
        if stem == "cifar":
            self.conv1 = _conv(3, 64, 3)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = _conv(3, 64, 7, 1 if aps else 2)
            self.maxpool = (
                nn.Sequential(nn.MaxPool2d(3, 1, 1), APS(64, aps))
                if aps
                else nn.MaxPool2d(3, 2, 1)
            )
        self.bn1 = nn.BatchNorm2d(64)
        self.stem_down = APS(64, aps) if aps and stem != "cifar" else nn.Identity()
        cin = 64
        for stage, (width, n) in enumerate(
            zip((64, 128, 256, 512), blocks, strict=True), 1
        ):
            layers = []
            for i in range(n):
                stride = 2 if stage > 1 and i == 0 else 1
                layers.append(block(cin, width, stride, aps))
                cin = width * block.expansion
            setattr(self, f"layer{stage}", nn.Sequential(*layers))
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.maxpool(self.stem_down(torch.relu(self.bn1(self.conv1(x)))))
        for stage in range(1, 5):
            x = getattr(self, f"layer{stage}")(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class VGG(nn.Module):
    """torchvision's VGG `arch`; `head="gap"` is the zoo's default head (global
    average pooling, then the logits), and `variant="aps"` pools as the zoo's "aps"
    (a dense 2x2 max pool, zero-padded at the bottom/right, then `APS`)."""

    def __init__(
        self,
        arch,
        batch_norm,
        num_classes=1000,
        head="fc",
        variant="baseline",
        filt_size=4,
    ):
        super().__init__()
        _check_variant(variant)
        layers, cin = [], 3
        for v in VGG_CONFIGS[arch]:
            if v == "M":
                if variant == "aps":
                    # Zero padding is -inf padding here: the inputs are ReLUs.
                    layers += [
                        nn.ZeroPad2d((0, 1, 0, 1)),
                        nn.MaxPool2d(2, 1),
                        APS(cin, filt_size),
                    ]
                else:
                    layers.append(nn.MaxPool2d(2, 2))
                continue
            layers.append(nn.Conv2d(cin, v, 3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(v))
            layers.append(nn.ReLU())
            cin = v
        self.features = nn.Sequential(*layers)
        self.pooled_size = 7 if head == "fc" else 1
        if head == "fc":
            self.classifier = nn.Sequential(
                nn.Linear(512 * 7 * 7, 4096),
                nn.ReLU(),
                nn.Dropout(),
                nn.Linear(4096, 4096),
                nn.ReLU(),
                nn.Dropout(),
                nn.Linear(4096, num_classes),
            )
        else:
            self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), self.pooled_size)
        return self.classifier(torch.flatten(x, 1))


def randomize(module, seed=0):
    """Random weights, with batch norms whose statistics and affine parameters are
    far from their initial 0/1 (so that a swapped mean and variance shows), in
    inference mode."""
    generator = torch.Generator().manual_seed(seed)

    def uniform(t, low, high):
        t.copy_(low + (high - low) * torch.rand(t.shape, generator=generator))

    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                fan_in = m.weight[0].numel()
                m.weight.copy_(
                    torch.randn(m.weight.shape, generator=generator)
                    * np.sqrt(2.0 / fan_in)
                )
                if m.bias is not None:
                    uniform(m.bias, -0.1, 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                uniform(m.weight, 0.5, 1.5)
                uniform(m.bias, -0.2, 0.2)
                uniform(m.running_mean, -0.2, 0.2)
                uniform(m.running_var, 0.5, 2.0)
    return module.eval()


def logits(module, images_nhwc):
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(images_nhwc.transpose(0, 3, 1, 2)))
        return module(x).numpy()
