"""The conversation: the chat turn (prepare, stream with failover, store), the prompt and its citations,
conversations and transcripts, feedback, the visitor's identity, and the wire formats (SSE, the UI
message stream, OpenAI's chat completions).

May import: core, i18n, llm, guard, workspace, knowledge.retrieval, knowledge.embeddings (the question's
embedding, started ahead of retrieval).
"""
