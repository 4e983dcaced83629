"""The AMQP façade: topology, the outbox relay, the inbox consumer, and the worker SDK."""
