"""The deployment specification: what a command deploys, parsed once into typed objects."""
