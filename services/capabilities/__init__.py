"""One module per capability, each with its SPEC (services/spec.py); found by services.spec in
alphabetical order, so that a new module is a new endpoint."""
