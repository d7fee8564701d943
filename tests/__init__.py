from pathlib import Path

# The checkout under test: its shipped topologies and the directory its commands run in.
REPO = Path(__file__).resolve().parent.parent
