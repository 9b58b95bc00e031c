"""`fastrft report`: the paper's tables, statistics and plots from run directories."""
