"""The fleet: runs queued by any face (`submit_*`, runtime/fleet/queue.py) and the workers that
drive many of them at once, take over dead runners' threads, and stop cleanly (runtime/fleet/worker.py)."""
