"""The benchmark runner from a checkout: the installed `resnet benchmark` itself (resnet/benchmarks/runner.py).

python benchmarks/run.py [--quick] [--data-dir DIR] [--only 1,3]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # a checkout without `pip install -e .`

from resnet.cli import main

if __name__ == "__main__":
    sys.exit(main(["benchmark", *sys.argv[1:]]))
