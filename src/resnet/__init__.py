"""Deep residual networks (He, Zhang, Ren, Sun 2015), faithful to the paper and fast to train.

>>> import resnet
>>> model = resnet.create_model("resnet20")          # CIFAR ResNet-20, option A shortcuts, 10 classes
>>> resnet.model_info("resnet50")["macs"]             # counted from the model, not stored
>>> model, classes = resnet.load_model("runs/x/best.pt")   # doctest: +SKIP
>>> fast = resnet.prepare_for_inference(model, "cpu")      # doctest: +SKIP  (BN folded, channels-last, bf16 if native)
"""

from typing import TYPE_CHECKING

from resnet.errors import ResNetError
from resnet.lazy import lazy_package

if TYPE_CHECKING:  # for type checkers; at run time each name loads on first use (`resnet --help` stays fast)
    from resnet.eval.evaluate import fully_convolutional
    from resnet.inference import load_model, predict
    from resnet.inference.fast import prepare_for_inference
    from resnet.models import create_model, fuse_conv_bn, list_models, model_info

__version__ = "0.1.0"

__getattr__, __all__ = lazy_package(__name__, __file__, also=("ResNetError", "__version__"))
