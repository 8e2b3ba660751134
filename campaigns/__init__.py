"""Campaign specifications (pydantic, loaded from TOML), search spaces, objectives
and constraints, and the example campaign files."""
