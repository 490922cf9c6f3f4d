"""Recovery engine: mend what can be mended, in the graph or by re-exporting, and prove it."""
