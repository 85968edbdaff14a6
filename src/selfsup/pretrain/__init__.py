"""Self-supervised pretraining: the methods (one file each), their losses, checkpoints and `selfsup pretrain`.
May import: core, data, models, train.
"""
