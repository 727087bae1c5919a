"""Conversational recommendation: understand a request, retrieve, rerank with an llmrec ranker, reply
with reasons, take feedback; sessions in SQLite (see `llmrec/chat/engine.py`)."""
