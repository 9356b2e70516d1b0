"""Chat completions: request validation, the conversation a model reads, usage, replies."""
