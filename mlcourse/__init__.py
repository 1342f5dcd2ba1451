"""mlcourse: the helper library every lesson of the course imports.

Each module does one job; import the one you need::

    from mlcourse.seeding import seed_everything
    from mlcourse.resources import ResourceConfig, resolve
    from mlcourse.artifacts import ArtifactStore

The package itself imports nothing heavy, so ``import mlcourse`` is instant.
"""

__version__ = "0.1.0"
