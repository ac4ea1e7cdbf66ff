"""Small stdlib-and-pydantic helpers every layer may use."""
