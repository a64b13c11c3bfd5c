"""chatforge studio: the pipeline (data, train, runs, eval, chat, export) as a local web app. See app.py."""
