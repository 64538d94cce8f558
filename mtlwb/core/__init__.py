"""Layer 0, what every other layer may use: atomic file writes (``io``), seeding and devices (``runtime``), fast
channel-axis tensor operations (``ops``) and the data-parallel helpers (``distributed``). Nothing here imports
the rest of mtlwb."""
