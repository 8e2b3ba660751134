"""Transports, instrument drivers and protocol compilation.

``drivers.sim`` holds the simulated lab: instruments that speak the same bytes
as the real ones. ``drivers`` never imports ``surrogates``.
"""
