"""The results format (SPEC §9), defined once: the columns of a ``results.csv`` row and what makes one
curve. ``sweep`` writes these columns, ``analyse.tables`` checks them, ``analyse.utility`` compares curves
by them; a new dimension is one entry here.
"""

from __future__ import annotations

# every results.csv row has these, in this order (SPEC §9), and any context columns after them
RESULT_COLUMNS = ("method", "task", "protocol", "label_budget", "seed", "metric", "value")
# what one row is about: a second row with the same key and context is a duplicate
ROW_KEY = RESULT_COLUMNS[:-1]
# the context a finetune / probe stage writes beside every row
ROW_CONTEXT = (
    "backbone",
    "width",
    "colour",
    "bn",
    "finetune_variant",
    "pretrain_variant",
    "dataset_hash",
    "pretrain_dataset_hash",
)
# one curve: a method under a protocol on a task ...
CURVE_KEY = ("method", "task", "protocol")
# ... within one dataset, backbone and width: scratch is matched within these, when present (one curve is
# one dataset: two renders of one variant, at other sizes or other samples, are two curves, never one
# pooled baseline)
CONTEXT = ("finetune_variant", "dataset_hash", "backbone", "width")
# a pretrained curve is also one per dataset its backbone was pretrained on (the transfer study pretrains
# on several): scratch has none, so these split the pretrained curves only, never the scratch baseline
PRETRAINED_CONTEXT = ("pretrain_variant",)
