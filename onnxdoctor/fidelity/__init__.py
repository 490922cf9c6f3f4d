"""Fidelity: an export held against the model it came from (verify), or against another export (compare).

Every other check compares an export with itself; these run two backends through the one decode
driver on the same tokens and say where the export first departs, by step and by layer.
"""
