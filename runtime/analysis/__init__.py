"""Analysis of run results: intervals, one-pool estimators, FLOPs-matched comparison, allocation, plots.

Pure numpy (plots import matplotlib lazily); nothing here loads a model or imports torch.
"""
