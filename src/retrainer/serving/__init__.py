"""REST serving of a registered model's alias, with hot swap: `retrainer serve`.

protocol (the scoring formats, 4xx/model errors), fast_input + model (a loaded version and
its fast path), follower (alias polling, hot swap), app (ASGI routes), metrics, records +
shadow + inference_log (the background writer), server (create_app, serve under uvicorn).
"""
