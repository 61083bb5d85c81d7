"""The inference endpoint: HTTP API, blue and green model slots, micro-batching, logging.

Nothing happens at import time; build the app with :func:`serving.app.create_app`.
"""
