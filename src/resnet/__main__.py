"""``python -m resnet``: the ``resnet`` command, also what ``torchrun -m resnet train ...`` starts on each rank."""

import sys

from resnet.cli import main

sys.exit(main())
