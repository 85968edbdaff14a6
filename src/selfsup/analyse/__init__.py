"""Pure functions over results tables: utility and its intervals, power, analyses and the report's tables.
May import: core, data.
"""
