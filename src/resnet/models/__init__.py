"""The paper's networks: declarative specs, blocks, shortcuts, and the registry that builds them."""

from resnet.models.blocks import BasicBlock, Bottleneck, PreActBasicBlock, PreActBottleneck
from resnet.models.fuse import fuse_conv_bn
from resnet.models.net import FeatureInfo, ResNet, ResNetFeatures, stage_plan
from resnet.models.registry import create_model, get_spec, list_models, min_input_size, model_info, resolve_options
from resnet.models.shortcuts import IdentityShortcut, ProjectionShortcut, ZeroPadShortcut
from resnet.models.specs import ARCHITECTURES, ArchSpec
from resnet.models.vgg import VGG
