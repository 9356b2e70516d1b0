"""The lower layer every app may import: OpenAI's error envelope, request ids and the
hot-path database threads. It imports no app of this project."""
