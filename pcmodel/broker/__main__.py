"""`python -m pcmodel.broker --broker URL --function module:name`: a worker process.

The same as `python -m pcmodel worker ...`.
"""

from __future__ import annotations

import sys

from pcmodel.broker.cli import worker_main

if __name__ == "__main__":
    sys.exit(worker_main())
