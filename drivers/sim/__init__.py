"""The simulated lab: virtual cells behind wire-level simulated instruments."""
