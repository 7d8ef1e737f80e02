"""The paper's networks: declarative specs, blocks, shortcuts, and the registry that builds them."""

from resnet.models.blocks import BasicBlock, Bottleneck, PreActBasicBlock, PreActBottleneck
from resnet.models.net import FeatureInfo, ResNet, ResNetFeatures, stage_plan
from resnet.models.registry import create_model, get_spec, list_models, model_info
from resnet.models.shortcuts import IdentityShortcut, ProjectionShortcut, ZeroPadShortcut
from resnet.models.specs import ARCHITECTURES, ArchSpec
from resnet.models.vgg import VGG

__all__ = [
    "ARCHITECTURES",
    "VGG",
    "ArchSpec",
    "BasicBlock",
    "Bottleneck",
    "FeatureInfo",
    "IdentityShortcut",
    "PreActBasicBlock",
    "PreActBottleneck",
    "ProjectionShortcut",
    "ResNet",
    "ResNetFeatures",
    "ZeroPadShortcut",
    "create_model",
    "get_spec",
    "list_models",
    "model_info",
    "stage_plan",
]
