"""gunicorn settings of the reference service, read by `gunicorn` started in this folder.

Threads: a client that sends its headers and then trickles its body holds one thread, not a
whole worker, so a few slow clients cannot stall the service. In production, put a reverse
proxy that buffers whole requests (nginx does by default) in front as well.
"""

worker_class = "gthread"
threads = 8
# A request slower than this is cut off; the thread is freed.
timeout = 30
