"""Layer 7, one experiment from a config: build it, train it (checkpoint and resume), evaluate it, select its
epoch, write and read its run record, reuse a finished run, load the reference code's checkpoints."""
