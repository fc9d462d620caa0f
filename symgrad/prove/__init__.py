"""The checking pipeline: obligation, reference derivative, normal form (by stage: budget,
flint_poly, exponents, atoms, normal_form), symmetry, witness, verdict; process isolation;
graph obligations (tape.py) and randomized evidence for a whole tape (randomized.py)."""
