"""Tests of the targets: what each helper does beyond the shared contract."""
