"""Where the FE labelling runs: local worker processes, or a Dask cluster named by its address.

Every FE labelling stage (GTN fracture labels, homogenization labels, the validation labels of
notebook 05, the design FE of notebook 08, the void maps of notebook 07) asks
:func:`scheduler_address` whether a cluster was named (an explicit argument, else the
environment variable ``STUDY_DASK_SCHEDULER``, which ``run_all.py --scheduler`` sets) and, if
so, runs its batches inside :func:`dask_backend`: joblib's ``dask`` backend on a
``dask.distributed`` client. Chunking, caching and resumption stay with the stage
(:func:`lib.stages.chunked_stage`): a finished chunk is on disk before the next is sent, so a
lost worker costs at most the tasks it was running (the scheduler reruns them elsewhere).

Workers must import ``lib``: start them in the study's venv with the repository on
``PYTHONPATH`` (README, "Labelling on a Dask cluster").
"""
from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterator
from typing import Any

from joblib import parallel_config

#: The environment variable naming the scheduler (``tcp://host:port``).
SCHEDULER_ENV = "STUDY_DASK_SCHEDULER"

#: Seconds to wait for the scheduler to answer, and for at least one worker to join.
CONNECT_TIMEOUT_S = 10.0

_ADDRESS_RE = re.compile(r"^((tcp|tls|ucx)://[^\s/:]+(:\d{1,5})?|inproc://\S+)$")  # inproc: tests


def check_address(address: str) -> str:
    """Return ``address`` stripped if it looks like a Dask scheduler address, else ValueError.

    >>> check_address(" tcp://10.0.0.5:8786 ")
    'tcp://10.0.0.5:8786'
    """
    if not isinstance(address, str) or not _ADDRESS_RE.match(address.strip()):
        raise ValueError(f"a Dask scheduler address looks like tcp://HOST:PORT "
                         f"(e.g. tcp://10.0.0.5:8786), got {address!r}")
    return address.strip()


def scheduler_address(explicit: str | None = None) -> str | None:
    """The cluster to use: ``explicit``, else ``$STUDY_DASK_SCHEDULER``, else None (local)."""
    address = explicit or os.environ.get(SCHEDULER_ENV) or None
    return None if address is None else check_address(address)


def connect(address: str, timeout: float = CONNECT_TIMEOUT_S,
            require_workers: bool = True) -> Any:
    """A ``dask.distributed.Client`` on ``address``, or ConnectionError within ~``timeout`` s.

    With ``require_workers``, also waits up to ``timeout`` s for one worker (a scheduler without
    workers would otherwise accept the tasks and never run them).
    """
    address = check_address(address)
    from dask.distributed import Client  # imported only when a cluster is used

    hint = (f"start one with `dask scheduler` and workers with `dask worker {address}`, or "
            f"unset {SCHEDULER_ENV} / drop --scheduler to label on this machine")
    try:
        client = Client(address, timeout=f"{timeout}s")
    except (OSError, TimeoutError) as err:
        raise ConnectionError(f"cannot reach the Dask scheduler at {address} within "
                              f"{timeout:g} s ({type(err).__name__}): {hint}") from None
    if require_workers:
        deadline = time.monotonic() + timeout
        while not client.scheduler_info(n_workers=-1).get("workers"):
            if time.monotonic() > deadline:
                client.close()
                raise ConnectionError(f"the Dask scheduler at {address} has no workers after "
                                      f"{timeout:g} s: {hint}")
            time.sleep(0.2)
    return client


def cluster_summary(client: Any) -> dict[str, int]:
    """``{"workers": n, "threads": total threads}`` of a connected client."""
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    return {"workers": len(workers),
            "threads": int(sum(w.get("nthreads", 0) for w in workers.values()))}


@contextlib.contextmanager
def dask_backend(address: str | None) -> Iterator[Any]:
    """Inside: joblib's ``Parallel`` runs on the cluster at ``address`` (yields the client).

    ``address`` None: a no-op (yields None) so callers can write one code path.
    """
    if not address:
        yield None
        return
    client = connect(address)
    with client, parallel_config(backend="dask"):
        yield client
