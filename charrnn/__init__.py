"""charrnn: character-level RNN / GRU / LSTM language models in NumPy."""

from charrnn.blas import prefer_avx2_kernels

__version__ = "0.1.0"

prefer_avx2_kernels()     # before NumPy loads its BLAS (see the function)
