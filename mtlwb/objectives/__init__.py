"""Layer 4, what training minimises and evaluation measures: the supervised losses over partially labelled batches
(``losses``), the streaming metrics and Δ_MTL (``metrics``) and the loss-weighting schemes (``weighting``).
Below the methods, which combine them; above the task kinds, the data and the models they read."""
