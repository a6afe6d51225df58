"""The durable ledger: runs, events, leases, sessions, artifacts (SQLite or PostgreSQL).

The rest of tether uses :class:`Ledger` and the records it returns; nothing outside this
package builds SQL.
"""

from tether.ledger.conversations import ConversationRecord, ConversationView, Receipt
from tether.ledger.deliveries import DeliveryRecord
from tether.ledger.identities import IdentityRecord
from tether.ledger.records import Artifact, Event, NewEvent, RoutineRecord, Run, Session
from tether.ledger.requests import RequestRecord
from tether.ledger.states import ACTIVE, STATE_EVENTS, TERMINAL, TRANSITIONS, check_transition
from tether.ledger.store import Ledger
from tether.ledger.users import UserRecord

__all__ = [
    "ACTIVE",
    "STATE_EVENTS",
    "TERMINAL",
    "TRANSITIONS",
    "Artifact",
    "ConversationRecord",
    "ConversationView",
    "DeliveryRecord",
    "Event",
    "IdentityRecord",
    "Ledger",
    "NewEvent",
    "Receipt",
    "RequestRecord",
    "RoutineRecord",
    "Run",
    "Session",
    "UserRecord",
    "check_transition",
]
