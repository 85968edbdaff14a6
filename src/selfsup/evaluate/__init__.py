"""Downstream tasks (one file each), the budget × seed sweep, finetuning, probes, the factor read-out and tuning.
May import: core, data, models, train, pretrain.
"""
