"""charrnn: character-level RNN / GRU / LSTM language models in NumPy."""

__version__ = "0.1.0"
