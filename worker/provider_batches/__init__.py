"""The batch tier: batch-tier jobs sent through the providers' batch APIs (OpenAI Batch,
Anthropic Message Batches), polled, and settled line by line like single calls."""
