"""Job handlers: load rows, call the compute core, store results. One module per job kind."""
