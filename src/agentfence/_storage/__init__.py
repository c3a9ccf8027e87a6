"""Where a decision log is stored (internal).

``database`` hands out connections and runs SQL on either engine; ``sqlite`` and
``postgres`` are its two dialects; ``tables`` reads and writes the log's tables through it.
"""
