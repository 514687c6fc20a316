"""CNN teachers for distillation: CIFAR-style ResNets and a fast whitened convnet.

`resnet-small` (widths 32/64/128, two blocks per stage) trains in minutes on CPU; `resnet18` is the classic
ResNet-18 layout (He et al. 2016) as used for CIFAR, the "larger teacher". `fastcnn` is a small convnet in the
shape of airbench94 (Jordan 2024, arXiv 2404.00498: 94% on CIFAR-10 in 0.36 PFLOPs of training), the strongest
teacher per CPU-hour: a frozen 2x2 whitening convolution initialised from the training patches, then three
conv-pool-norm blocks (`fastcnn-wide`: wider blocks, for CIFAR-100). Every teacher exposes its stage outputs via
`forward_features`, so feature distillation can pool a stage to the student's patch grid (for the ResNets `layer3`
has stride 4, i.e. 8x8 for 32 px and 7x7 for 28 px, the same grid as a patch-4 student).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import TITNError

TEACHER_LAYOUTS = {
    # name: (widths per stage, blocks per stage)
    "resnet-small": ((32, 64, 128), (2, 2, 2)),
    "resnet18": ((64, 128, 256, 512), (2, 2, 2, 2)),
}


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class ResNetTeacher(nn.Module):
    def __init__(self, name: str, in_chans: int, num_classes: int):
        super().__init__()
        if name not in TEACHER_LAYOUTS:
            raise TITNError(f"unknown teacher {name!r}; choose one of: {', '.join(TEACHER_LAYOUTS)}")
        widths, blocks = TEACHER_LAYOUTS[name]
        self.name = name
        self.stem = nn.Sequential(nn.Conv2d(in_chans, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]))
        stages, cin = [], widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks, strict=True)):
            stride = 1 if i == 0 else 2
            stages.append(
                nn.Sequential(*(BasicBlock(cin if j == 0 else w, w, stride if j == 0 else 1) for j in range(n)))
            )
            cin = w
        self.stages = nn.ModuleList(stages)
        self.stage_names = [f"layer{i + 1}" for i in range(len(stages))]
        self.stage_channels = dict(zip(self.stage_names, widths, strict=True))
        self.fc = nn.Linear(widths[-1], num_classes)

    def forward_features(self, x: Tensor) -> dict[str, Tensor]:
        """Every stage's feature map, by name ('layer1'...)."""
        x = F.relu(self.stem(x))
        feats = {}
        for name, stage in zip(self.stage_names, self.stages, strict=True):
            x = stage(x)
            feats[name] = x
        return feats

    def forward_head(self, feature_map: Tensor) -> Tensor:
        return self.fc(feature_map.mean(dim=(2, 3)))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x)[self.stage_names[-1]])


FASTCNN_WIDTHS = {"fastcnn": (64, 256, 256), "fastcnn-wide": (128, 384, 384)}
WHITEN_BIAS_EPOCHS = 3  # the whitening layer's bias trains this long, then freezes (airbench's choice)


class FrozenScaleBatchNorm(nn.BatchNorm2d):
    """BatchNorm with its scale fixed at 1 and only the shift learned, and fast-moving running statistics
    (torch momentum 0.4): what airbench found trains best in a 10-epoch budget."""

    def __init__(self, channels: int):
        super().__init__(channels, eps=1e-12, momentum=0.4)
        self.weight.requires_grad_(False)


class ConvGroup(nn.Module):
    """conv3x3 -> max-pool 2 -> norm -> GELU -> conv3x3 -> norm -> GELU; convs start as identity on their first
    channels (Dirac), so the untrained net passes its input through."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding="same", bias=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding="same", bias=False)
        self.norm1, self.norm2 = FrozenScaleBatchNorm(cout), FrozenScaleBatchNorm(cout)
        for conv in (self.conv1, self.conv2):
            nn.init.dirac_(conv.weight.data[: conv.weight.shape[1]])

    def forward(self, x: Tensor) -> Tensor:
        x = F.gelu(self.norm1(F.max_pool2d(self.conv1(x), 2)))
        return F.gelu(self.norm2(self.conv2(x)))


class FastCNN(nn.Module):
    """Whitening conv + three ConvGroups + global max-pool + a bias-free linear head scaled by 1/9."""

    def __init__(self, name: str, in_chans: int, num_classes: int):
        super().__init__()
        widths = FASTCNN_WIDTHS[name]
        self.name = name
        self.whiten = nn.Conv2d(in_chans, 2 * in_chans * 4, 2, padding=0, bias=True)
        self.whiten.weight.requires_grad_(False)
        cins = (self.whiten.out_channels, *widths[:-1])
        self.stages = nn.ModuleList(ConvGroup(cin, w) for cin, w in zip(cins, widths, strict=True))
        self.stage_names = [f"layer{i + 1}" for i in range(len(widths))]
        self.stage_channels = dict(zip(self.stage_names, widths, strict=True))
        self.fc = nn.Linear(widths[-1], num_classes, bias=False)

    @torch.no_grad()
    def init_from_data(self, images: Tensor, eps: float = 5e-4) -> None:
        """Set the whitening filters to the 2x2 training patches' eigenvectors scaled by 1/sqrt(eigenvalue), and
        their negatives: the first layer then decorrelates its input from step one."""
        c, (h, w) = images.shape[1], self.whiten.kernel_size
        patches = images.float().unfold(2, h, 1).unfold(3, w, 1).transpose(1, 3).reshape(-1, c * h * w)
        eigenvalues, eigenvectors = torch.linalg.eigh(patches.T @ patches / len(patches))
        filters = (eigenvectors.T / torch.sqrt(eigenvalues + eps)[:, None]).reshape(-1, c, h, w).flip(0)
        self.whiten.weight.copy_(torch.cat((filters, -filters)).to(self.whiten.weight))

    def start_epoch(self, epoch: int) -> None:
        """The whitening bias learns for the first epochs only."""
        self.whiten.bias.requires_grad_(epoch < WHITEN_BIAS_EPOCHS)

    def forward_features(self, x: Tensor) -> dict[str, Tensor]:
        x = F.gelu(self.whiten(x))
        feats = {}
        for name, stage in zip(self.stage_names, self.stages, strict=True):
            x = feats[name] = stage(x)
        return feats

    def forward_head(self, feature_map: Tensor) -> Tensor:
        return self.fc(feature_map.amax(dim=(2, 3))) / 9

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x)[self.stage_names[-1]])


def build_teacher(name: str, in_chans: int, num_classes: int) -> nn.Module:
    """Channels-last weights make oneDNN run every convolution in NHWC (fastcnn trains 1.6x faster in fp32 on 2
    cores, benchmarks/teacher_throughput.py), same numbers; the layout follows the weights, inputs can stay NCHW."""
    cls = FastCNN if name in FASTCNN_WIDTHS else ResNetTeacher
    return cls(name, in_chans, num_classes).to(memory_format=torch.channels_last)
