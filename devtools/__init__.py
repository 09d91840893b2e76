"""Development tools shared by make run, the tests, the chaos run and the benchmarks.

- ``devtools.processes``: child processes in their own process groups, started with
  a readiness check and stopped warmly, then killed after a deadline.
- ``devtools.redis_commands``: the Redis commands a call sends and executes.
"""
