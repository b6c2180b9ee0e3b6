"""INT8 (explicit Q/DQ) and FP16 preparation of bundles, calibration data and accuracy reports:
`ssp calibrate` (see calibration/README.md and :mod:`calibration.pipeline`)."""
