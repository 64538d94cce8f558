"""Layer 8, finished runs read back: sweep tables (mean ± std over seeds, Δ_MTL, paired statistics, claims), the
statistics themselves, and one run's record as a table."""
