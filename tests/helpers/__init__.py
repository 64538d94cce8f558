"""Shared helpers of the tests: seeded method steps (``steps``), real-dataset fixtures written in their published
formats (``fixtures_real``), the reference-parity case (``parity_case``) and hand-made sweep records
(``sweep_records``)."""
