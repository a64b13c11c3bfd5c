"""`chatforge serve`: an OpenAI-compatible HTTP API (FastAPI) and a web chat page over one inference Engine (chatforge.infer).

    app.py        routes, auth, error objects, server-sent events
    schemas.py    the OpenAI request/response shapes (pydantic)
    scheduler.py  the request queue and the one worker thread that generates
    server.py     uvicorn in the foreground (`chatforge serve`) or in a thread (tests, bench)
    config.py     ServeConfig (the command-line options)
"""
