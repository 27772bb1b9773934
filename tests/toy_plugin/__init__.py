"""The toy target: a fake cloud of JSON files (tests/toy_cloud.py), written from plugins/README.md alone."""
