"""Training: run set-up and resume (run.py), the loop (loop.py), where a step is computed
(engine.py), optimizers, schedules, data, the checkpoint format (checkpoint.py) and metrics."""
