"""REST serving of a registered model's alias with hot swap (`retrainer serve`).

protocol, fast_input: bodies, errors, request -> array | model: a loaded version, its fast path
follower: alias polling, swap | app: ASGI routes | metrics | records, shadow, inference_log: the
background writer | server: create_app, serve under uvicorn.
"""
