"""The speed claims of docs/performance.md as a runner installed with the package (`resnet benchmark`).

Each section sets ours against a baseline measured in the same run, in interleaved blocks; ratios are what to read.
"""
