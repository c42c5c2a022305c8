"""Training: run set-up and resume (run.py), the loop (loop.py), the learning rate (lr.py), the
divergence rule (divergence.py), batching (data.py, docbatch.py), what a resume may change
(resume.py), the start-of-run report and metrics. Where a step runs is charrnn/engines; the
optimizers are charrnn/optim.py; the checkpoint format is charrnn/store."""
