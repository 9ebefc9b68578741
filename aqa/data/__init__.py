"""Datasets: frame sampling, transforms, one module per dataset, synthetic dives, doctor."""
