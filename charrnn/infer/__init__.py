"""Using a trained model: sampling text (sample.py) and the exact evaluation pass (evaluate.py)."""
