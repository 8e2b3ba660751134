"""Early-life lifetime predictors and cell-health models (docs/lifetime.md).

Modules: ``dataset`` (CellHistory), ``features`` (Severson), ``eis_features``,
``baseline`` (elastic net + CV+), ``sequence`` (GRU/LSTM and hybrid forecasters),
``health`` (SVMs), ``artifacts`` (safe storage), ``training`` /
``sequence_training`` / ``health_training`` (the retraining API over the
database), ``inspection`` (``voltloop models``), ``evaluation`` (benchmark),
``synthetic`` (cells with a planted answer).
"""
