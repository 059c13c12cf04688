"""REST serving with hot swap. Requests: protocol, fast_input; versions: model, follower;
the ASGI app: app, metrics; the background writer: records, shadow, inference_log; run: server."""
