"""The associations sending to this process, as the intake keeps them: each one's
sessions cache, and its row in the index, which holds its sessions' idle timers while
it is open (and for ``lease`` seconds after this node dies)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from xnatd.config import Receiver
from xnatd.intake.intake import SessionCache
from xnatd.metrics import Metrics
from xnatd.store.digests import AfterReplyDigests
from xnatd.store.prearchive import Prearchive

LEASE_SECONDS = 60.0  # an association's hold on its sessions, renewed while it is open


@dataclass
class AssociationState:
    """What xnatd knows about one open association."""

    id: str
    receiver: Receiver
    calling_ae: str
    peer: str
    cache: SessionCache = field(default_factory=lambda: SessionCache(digests=AfterReplyDigests()))
    result: str = "closed"
    registered: bool = False
    logging_thread: int | None = None  # the thread its AE titles are bound to for logging


class Associations:
    """The open associations of this process, and their rows in the index."""

    def __init__(
        self, prearchive: Prearchive, metrics: Metrics, node: str, lease: float = LEASE_SECONDS
    ) -> None:
        self.lease = lease  # how long this node's associations hold sessions if it dies
        self.prearchive = prearchive
        self.metrics = metrics
        self.node = node
        self._lock = threading.Lock()
        self._open: dict[object, AssociationState] = {}

    def get(self, assoc: object) -> AssociationState | None:
        """The state of an open association, or None when it is not (or no longer) open."""
        with self._lock:
            return self._open.get(assoc)

    def add(self, assoc: object, state: AssociationState) -> None:
        """Register an accepted association: its index row holds the sessions it delivers to."""
        self.prearchive.association_opened(
            state.id,
            node=self.node,
            called_ae=state.receiver.ae_title,
            calling_ae=state.calling_ae,
            peer=state.peer,
            lease=self.lease,
        )
        state.registered = True
        with self._lock:
            self._open[assoc] = state
        self.metrics.associations_active.labels(state.receiver.ae_title).inc()

    def remove(self, assoc: object) -> AssociationState | None:
        """Forget an association and drop its index row; its state, or None if unknown."""
        with self._lock:
            state = self._open.pop(assoc, None)
        if state is not None and state.registered:
            self.prearchive.association_closed(state.id, state.cache.digests)
            self.metrics.associations_active.labels(state.receiver.ae_title).dec()
        return state

    def renew_leases(self) -> None:
        """Extend the lease of this node's open associations in the index."""
        self.prearchive.renew_leases(self.node, self.lease)
