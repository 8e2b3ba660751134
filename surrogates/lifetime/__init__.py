"""Early-life lifetime predictors and cell-health models."""
