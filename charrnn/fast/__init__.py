"""What exists only for speed: per-step products in blocks, BLAS threads, the allocator, shared
memory, data-parallel workers and the evaluation pipeline. Imports nothing else of charrnn."""
