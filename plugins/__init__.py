"""Built-in mlplat plugins, installed as the `mlplat_plugins` package (one sub-package per target)."""
