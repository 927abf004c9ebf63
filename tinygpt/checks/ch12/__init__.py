"""Property checks for chapter 12 (the decode loop), written once and run against anyone's code.

One module per notebook (``decode``: stop sequences and the loop; ``paged``: the paged KV
cache; ``batching``: the continuous-batching scheduler); a notebook imports its checks
from here.
"""
