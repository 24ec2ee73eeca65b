"""Datasets and LightningDataModules: training clips and TAP-Vid evaluation examples."""
