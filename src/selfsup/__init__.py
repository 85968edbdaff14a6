"""selfsup: how many labels does self-supervised pretraining save?"""

__version__ = "0.1.0"
