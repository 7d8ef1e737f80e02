"""VGG-19, the paper's reference network (Fig. 3 left), laid out as torchvision's so its weights load."""

from __future__ import annotations

import torch
from torch import nn

from resnet.errors import InputError
from resnet.models.net import check_images, init_weights
from resnet.models.specs import VGG19_CONFIG


def _vgg_features(config: tuple[int | str, ...], in_chans: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = in_chans
    for item in config:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            assert isinstance(item, int)
            layers += [nn.Conv2d(channels, item, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            channels = item
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """Plain 3x3-conv stack with a 3-layer MLP head (dropout 0.5)."""

    def __init__(self, *, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.5) -> None:
        super().__init__()
        self.arch = "vgg19"
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.num_features = 512
        self.features = _vgg_features(VGG19_CONFIG, in_chans)
        # Adaptive pooling to 7x7 keeps the 25088-wide head (and torchvision's weights) for any input size.
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )
        init_weights(self, zero_init_residual=False)  # He init of the convolutions, as the ResNets; the classifier:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0, 0.01)
                nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x, self.arch, self.in_chans)
        if x.shape[2] < 32 or x.shape[3] < 32:
            raise InputError(
                f"vgg19 needs images of at least 32x32 pixels (five 2x2 max-pools), got {x.shape[2]}x{x.shape[3]}; "
                "resize them, or use a network for small images (e.g. resnet20)"
            )
        return self.features(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(features), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
