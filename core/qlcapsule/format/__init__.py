"""The capsule format on disk: capsule.yaml (model, yamlsrc, names, globs), the walk (tree), the seal (lock),
the Capsule object (capsule) and the one integrity path of exports (streaming). Imports only ``errors``."""
