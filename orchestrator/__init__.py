"""The campaign engine, Prefect flows, channel leases, command line and reports.

``orchestrator`` is the only package that knows the order of a round:
campaigns → surrogates → drivers → db → surrogates.
"""
