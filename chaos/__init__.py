"""`make chaos`: the real stack under faults, and an invariant checker for what it did.

- ``chaos.stack``: Redis (append-only), gunicorn, Celery workers and beat as processes.
- ``chaos.steplog``: loaded into workers; every step execution goes to a JSON-lines log.
- ``chaos.driver``: load (starts, events, terminates, restarts, duplicate bursts) and
  faults (SIGKILLed workers and pool children, a Redis restart), each one logged.
- ``chaos.checker``: reads the logs and the records and counts violations.
- ``python -m chaos --seconds S``: all of it; exits non-zero on any violation.
"""
