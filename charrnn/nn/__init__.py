"""The model's math and nothing else: operations, flat parameters, the cells (one module each, a
registry), the stacked model, its batch-1 step and its textbook reference. Imports only fast/."""
