"""The paper's published numbers that the experiments are compared with (He et al. 2015).

Only what the paper prints is here. The plain nets' CIFAR-10 errors appear in Fig. 6 as curves, not as numbers,
so reports quote none for them rather than values read off a plot.
"""

from __future__ import annotations

# Table 6: CIFAR-10 test error (%) of ResNets trained with the section 4.2 recipe (option A shortcuts).
# ResNet-110 is the best of 5 runs; its mean and std over the 5 runs is TABLE6_RESNET110_MEAN_STD.
TABLE6_TEST_ERROR: dict[int, float] = {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43, 1202: 7.93}
TABLE6_RESNET110_MEAN_STD: tuple[float, float] = (6.61, 0.16)

# Table 6: parameters, as printed (millions).
TABLE6_PARAMS_M: dict[int, float] = {20: 0.27, 32: 0.46, 44: 0.66, 56: 0.85, 110: 1.7, 1202: 19.4}

# What Fig. 1 and Fig. 6 (left) show, in the paper's words (section 4.2).
DEGRADATION_CLAIM = (
    "the deeper plain net has higher training error, and thus higher test error (Fig. 1, Fig. 6 left); "
    "with shortcuts the deeper net has lower training and test error (Fig. 6 middle)"
)


def paper_test_error(model: str) -> float | None:
    """Table 6's test error for a CIFAR ResNet name (``resnet56``), None for nets the table does not list."""
    if not model.startswith("resnet"):
        return None
    try:
        return TABLE6_TEST_ERROR.get(int(model.removeprefix("resnet")))
    except ValueError:
        return None
