"""The pool watch: ticks, episodes, resize policy, errors, backoff, schedules, limits, node health, canary."""
