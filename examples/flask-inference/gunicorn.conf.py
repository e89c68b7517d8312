"""gunicorn settings of the example (gunicorn -c gunicorn.conf.py).

Environment: BIND (default 127.0.0.1:5000; "unix:/path/app.sock" for a Unix
socket, as in the stable pod), WEB_CONCURRENCY (worker processes, default
2), GUNICORN_THREADS (threads per worker, default 4), MODEL_VERSION and
MODEL_DIR (app.py). Anything else: gunicorn's own flags or GUNICORN_CMD_ARGS,
which win over this file.
"""
import os

chdir = os.path.dirname(os.path.abspath(__file__))
wsgi_app = "wsgi:app"
bind = [os.environ.get("BIND") or "127.0.0.1:5000"]
# gthread: threads per worker and HTTP/1.1 keep-alive (the sync worker
# closes every connection). Load the model once, before forking.
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY") or 2)
threads = int(os.environ.get("GUNICORN_THREADS") or 4)
preload_app = True
# Idle keep-alive connections outlive shadowtee's pooled ones (closed after
# at most 30 s idle), so the proxy, not gunicorn, closes an idle connection
# and never sends a request on one gunicorn is closing.
keepalive = 75
timeout = 30
graceful_timeout = 20
# The worker heartbeat file: tmpfs when there is one (a read-only root
# filesystem has no writable /tmp).
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
accesslog = None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL") or "info"
proc_name = "flask-inference-" + (os.environ.get("MODEL_VERSION") or "v1")
