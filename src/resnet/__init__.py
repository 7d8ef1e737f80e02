"""Deep residual networks (He, Zhang, Ren, Sun 2015), faithful to the paper and fast to train.

>>> import resnet
>>> model = resnet.create_model("resnet20")          # CIFAR ResNet-20, option A shortcuts, 10 classes
>>> resnet.model_info("resnet50")["macs"]             # counted from the model, not stored
"""

from resnet.errors import ResNetError
from resnet.models import create_model, list_models, model_info

__version__ = "0.1.0"

__all__ = ["ResNetError", "__version__", "create_model", "list_models", "model_info"]
