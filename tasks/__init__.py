"""Benchmark tasks; importing this package registers them with the mmengine/mmdet registries."""
