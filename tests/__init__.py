"""The test suite.

Tiny models gain nothing from intra-op threads, and idle OpenMP threads spinning in the test process
starve the collector and API subprocesses that tests start (measured here: 10x slower on two cores),
so every test process and its children use one thread.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
