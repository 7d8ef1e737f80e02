"""Readers for each on-disk dataset format: CIFAR python pickles, IDX (MNIST family), image folders."""
