"""The request corpus: raw requests and what the parser must make of them."""
