"""What every command reads and writes: the checkpoint format, the text and its encodings,
the corpus, the vocabulary. It imports nothing from infer, train, tools or cli."""
