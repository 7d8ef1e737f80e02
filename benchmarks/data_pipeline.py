"""The data-pipeline benchmark alone, with its own knobs (section 4 of `resnet benchmark`).

python benchmarks/data_pipeline.py [--data-dir ../shared/datasets] [--batches 200] [--workers N]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # a checkout without `pip install -e .`

from resnet.benchmarks.data_pipeline import main

if __name__ == "__main__":
    main()
