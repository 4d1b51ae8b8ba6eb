"""The terminal adapter: the console, its screen, forms and Tab completion."""
