"""`fastrft sweep`: a grid of training runs, each in its own process, with a ledger."""
