"""Templates of the chat loop (`llmrec chat`, the chat API): understanding a request, and the reply's reasons."""
