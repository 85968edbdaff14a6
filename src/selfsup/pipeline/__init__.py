"""The whole study: the plan behind dvc.yaml, its cost estimate, params and profiles.
May import: core, data, models, train, pretrain, evaluate, analyse, report.
"""
