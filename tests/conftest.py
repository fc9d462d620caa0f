import os

# Keep per-check limits small in the test suite so a runaway shows up as a failure fast.
os.environ.setdefault("SYMGRAD_TIMEOUT", "300")
