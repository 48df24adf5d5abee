"""Where work runs: executors, the ready queue and the scheduler that drives one task's path."""
