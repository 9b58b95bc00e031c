"""`fastrft bench`: throughput of a robust training step (the lever ladder) or of an attack."""
