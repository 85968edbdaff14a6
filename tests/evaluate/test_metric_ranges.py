"""Each task declares the range of every metric it computes, beside its metric function; the report
refuses a results row outside it. The declaration is checked against the functions themselves, so it
cannot drift from what a run writes."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from selfsup.core.errors import UserError
from selfsup.evaluate.tasks import get_task, list_tasks
from selfsup.report.load import check_metrics


def _outputs_and_targets(task, n: int = 6, side: int = 2):
    g = torch.Generator().manual_seed(0)
    if task.dense and task.kind == "regress":  # depth: (N, 2, h, w) targets (depth, object mask)
        depth = torch.rand(n, side, side, generator=g) * 3 + 0.5
        mask = (torch.rand(n, side, side, generator=g) > 0.5).float()
        return torch.rand(n, 1, side, side, generator=g) * 4, torch.stack([depth, mask], 1)
    if task.dense:
        return torch.randn(n, task.outputs, side, side, generator=g), torch.randint(0, task.outputs, (n, side, side))
    return torch.randn(n, task.outputs, generator=g), torch.randint(0, task.outputs, (n,))


@pytest.mark.parametrize("name", list_tasks())
def test_every_metric_a_task_computes_has_a_range_and_falls_inside_it(name):
    task = get_task(name)
    for trial in range(5):
        out, y = _outputs_and_targets(task)
        if trial == 0:  # a perfect prediction: the other end of the range
            out = y[:, :1].clone() if task.kind == "regress" else torch.nn.functional.one_hot(y, task.outputs)
            out = out.float() if task.kind == "regress" else out.movedim(-1, 1).float()
        metrics = task.metrics(out, y)
        assert set(metrics) == set(task.ranges), (name, sorted(metrics), sorted(task.ranges))
        for metric, value in metrics.items():
            low, high = task.ranges[metric]
            assert math.isnan(value) or low <= value <= high, (name, metric, value)
    assert task.metric in task.ranges


def _rows(task: str, metric: str, value: float) -> pd.DataFrame:
    return pd.DataFrame(
        [{"method": "scratch", "task": task, "protocol": "finetune", "label_budget": 8, "seed": 0}]
    ).assign(metric=metric, value=value, source="r.csv", source_line=2)


@pytest.mark.parametrize(
    "task,metric,value,needle",
    [
        ("classification", "accuracy", 1.0000001, "impossible accuracy 1.0000001 at r.csv:2"),
        ("pose", "accuracy", -0.01, "impossible accuracy -0.01"),
        ("segmentation", "miou", 1.5, "segmentation miou is in [0, 1]"),
        ("depth", "abs_rel", -0.5, "depth abs_rel is at least 0"),
        ("depth", "l1_everywhere", 0.1, "unknown metric 'l1_everywhere' of task 'depth'"),
        ("pretrain", "accuracy", 0.5, "unknown task 'pretrain'"),
    ],
)
def test_a_value_no_run_could_write_is_refused_with_its_row(task, metric, value, needle):
    with pytest.raises(UserError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        check_metrics(_rows(task, metric, value))


ENDS = [("classification", "accuracy", 0.0), ("classification", "accuracy", 1.0), ("depth", "l1", 9.0)]


@pytest.mark.parametrize("task,metric,value", ENDS)
def test_the_ends_of_a_range_are_inside_it(task, metric, value):
    check_metrics(_rows(task, metric, value))
