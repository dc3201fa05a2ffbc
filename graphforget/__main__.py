"""``python -m graphforget`` is the ``graphforget`` command.

Under ``torchrun --nproc-per-node N -m graphforget train ...`` (``WORLD_SIZE > 1`` in the
environment) the default process group is initialised first
(:func:`graphforget.train.distributed.init_from_env`), so ``train`` runs data-parallel
(:class:`graphforget.train.distributed.DistributedTrainer`); ranks other than 0 print nothing
on stdout (errors still reach stderr) and rank 0 alone writes the checkpoint.
"""
from __future__ import annotations

import os
import sys


def main() -> int:
    from .cli import main as cli_main
    from .train import distributed

    started = distributed.init_from_env()
    quiet = started and distributed.rank() != 0
    stdout = sys.stdout
    if quiet:
        sys.stdout = open(os.devnull, "w")
    try:
        return cli_main()
    finally:
        if quiet:
            sys.stdout.close()
            sys.stdout = stdout
        if started:
            distributed.shutdown()


if __name__ == "__main__":
    sys.exit(main())
