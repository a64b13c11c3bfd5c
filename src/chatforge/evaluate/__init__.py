"""Evaluation: base vs tuned on held-out conversations (`chatforge eval`; Python: `evaluate.run.evaluate`)."""
