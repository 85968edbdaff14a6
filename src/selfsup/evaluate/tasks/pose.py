"""Object pose: 5 bins of where the object's up axis points (see :func:`selfsup.data.scene.pose_bin`)."""

import torch
import torch.nn.functional as F

from selfsup.data.scene import MIRRORED_POSE_BIN
from selfsup.evaluate.tasks import TASKS, Task, fc_head
from selfsup.evaluate.tasks.classification import ACCURACY_RANGE, accuracy, majority_chance


def mirror_bins(y: torch.Tensor) -> torch.Tensor:
    """The pose bins of horizontally flipped images: left and right swap (scene.MIRRORED_POSE_BIN)."""
    return torch.tensor(MIRRORED_POSE_BIN, device=y.device, dtype=y.dtype)[y]


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
        ACCURACY_RANGE,
        outputs=NUM_BINS,
        chance=majority_chance(NUM_BINS),
        mirror=mirror_bins,
        label="pose",
        one_class_hint="the pose varies only with the viewpoint factor V on (render a variant such as '--V-')",
    )
