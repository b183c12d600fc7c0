"""Schedules: cron schedules, the worker that fires their occurrences, and the clock they read.

`calendar` (schedules, their occurrences and run history), `worker`, `clock`.
"""
