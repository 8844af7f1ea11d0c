"""Static pages served by the app: package data (located with importlib.resources), no code."""
