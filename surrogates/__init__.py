"""Models that learn from the campaign database: GP/BO proposers, crystal graphs and
GNN surrogates, early-life lifetime predictors, EIS health models and the model registry.

``surrogates`` never imports ``drivers``.
"""
