"""The WSGI entry point gunicorn imports (wsgi:app): the app of app.py for
$MODEL_VERSION from $MODEL_DIR, loaded once (in the master with preload_app,
then shared by the forked workers)."""
from app import create_app

app = create_app()
