"""Input data: manifest formats, the built-in sentence bank and synthetic speech."""
