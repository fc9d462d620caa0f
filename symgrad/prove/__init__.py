"""The checking pipeline: obligation, reference derivative, normal form, witness, verdict."""
