"""Example campaign files shipped with voltloop (``voltloop init`` copies them)."""
