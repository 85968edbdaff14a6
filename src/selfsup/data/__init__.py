"""Scene description → render → dataset format: scenes, shapes, assets, the Blender renderer (the only bpy importer),
datasets, label budgets, shards, augmentations and colour spaces. May import: core.
"""
