"""`fastrft report`: the paper's tables, win counts, paired t-tests and figures from run
directories.

collect (run directories -> records), cells (the table's rows, columns and cells), stats,
tables (markdown, CSV), figures (through plots, which draws them), cli; and demo, the
report of `fastrft demo`.
"""
