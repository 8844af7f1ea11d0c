"""Default configuration and scenarios: package data (located with importlib.resources), no code.

`livecoach init` copies them into a folder of your own to customise.
"""
