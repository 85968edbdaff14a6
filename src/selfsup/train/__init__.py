"""The one training loop (fit), its schedules, data parallel and stacked (vmapped) sweeps.
May import: core, data, models.
"""
