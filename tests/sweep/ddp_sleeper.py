"""A torchrun worker for tests/sweep/test_launch.py: joins the process group as a training
run does (unless given --plain, as a process that is not fastrft's), writes its pid, then
waits to be killed."""

import os
import sys
import time
from pathlib import Path

from fastrft.engine.distributed import init_distributed

if "--plain" not in sys.argv:
    init_distributed("cpu")
Path(sys.argv[1], f"rank{os.environ['RANK']}.pid").write_text(str(os.getpid()))
time.sleep(120)
