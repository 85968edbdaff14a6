"""Object pose: 5 bins of where the object's up axis points (see :func:`selfsup.scene.pose_bin`)."""

import torch.nn.functional as F

from . import TASKS, Task, fc_head
from .classification import accuracy, majority_chance

NUM_BINS = 5


@TASKS.register("pose")
def pose() -> Task:
    return Task(
        "pose",
        "accuracy",
        fc_head(NUM_BINS),
        lambda ds: ds.labels["pose_bin"].to_numpy(),
        F.cross_entropy,
        accuracy,
        outputs=NUM_BINS,
        chance=majority_chance(NUM_BINS),
    )
