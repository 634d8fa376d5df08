"""Reseed the random generators at every epoch, so that a resumed run
repeats an uninterrupted one."""

import random

import numpy as np
import torch
from mmdet.registry import HOOKS
from mmengine.hooks import Hook

# Large odd step between the seeds of consecutive epochs.
EPOCH_STRIDE = 1_000_003


def epoch_seed(base_seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch`` (0-based) of a run seeded ``base_seed``."""
    return (base_seed + EPOCH_STRIDE * epoch) % 2**32


@HOOKS.register_module()
class EpochSeedHook(Hook):
    """Seed Python's, numpy's and torch's generators from the run's seed and
    the epoch before each training epoch.

    mmengine seeds them once, when the Runner is built, and does not save
    their states in checkpoints: after ``--resume`` the data augmentation and
    the RPN/RoI samplers would draw different numbers than the uninterrupted
    run did. With this hook their states at the start of an epoch depend only
    on (seed, epoch), so a run resumed from ``epoch_N.pth`` reaches the same
    weights as one that never stopped (with ``num_workers=0``, or
    non-persistent workers, and deterministic kernels). ``tools/train.py``
    adds it. Dataloader workers are seeded by mmengine's ``worker_init_fn``.
    """

    priority = 'VERY_HIGH'

    def before_train_epoch(self, runner) -> None:
        seed = epoch_seed(runner.seed, runner.epoch)
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)  # also seeds CUDA generators
