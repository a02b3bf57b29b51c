"""One seqcls run under torchrun in which only rank 1 receives SIGTERM (test helper).

    torchrun --nproc_per_node 2 tests/dist_signal_worker.py WAIT_FOR_FILE ARGS...

Rank 1 sends itself SIGTERM once WAIT_FOR_FILE exists (a checkpoint written by rank 0); rank 0
never gets a signal and must stop with it, after the same update, without a deadlock.
"""

import os
import signal
import sys
import threading
import time
from pathlib import Path

from linkbert.core.run import main
from linkbert.seqcls.run_seqcls import SeqClsTask


def signal_self_when(path: Path) -> None:
    while not path.exists():
        time.sleep(0.01)
    os.kill(os.getpid(), signal.SIGTERM)


if __name__ == "__main__":
    wait_for, argv = Path(sys.argv[1]), sys.argv[2:]
    if os.environ.get("RANK") == "1":
        threading.Thread(target=signal_self_when, args=(wait_for,), daemon=True).start()
    main(SeqClsTask, argv)
