"""The JSON messages between Flow45, workers and operators, as pydantic models.

Their JSON Schema (`flow45 schema`) is the contract for workers in any language. Every inbound
message is a JSON object with a `type`; its AMQP `message_id` property is its idempotency key, and
`reply_to` + `correlation_id` ask for a `Reply`.
"""

from __future__ import annotations

from flow45.messages.base import (  # noqa: F401  (the one place to import messages from)
    UTC_TIME,
)
from flow45.messages.worker import (  # noqa: F401
    Offer, UndoNotice, Claim, Progress, Submit, Fail, Skip, MAX_DEADLINE, Park, WorkerMessage, CallbackSubmit,
    CallbackFail, CallbackMessage, worker_messages, callback_messages, WORKER_TYPES, CALLBACK_TYPES,
)
from flow45.messages.operator import (  # noqa: F401
    Deploy, Validate, Trigger, Pause, Resume, Backfill, Undo, OperatorSkip, Retry, Hold, Release, Cancel,
    OperatorSubmit, Take, HandBack, SetOutput, Note, Status, OperatorMessage, operator_messages, OPERATOR_TYPES,
)
from flow45.messages.reads import (  # noqa: F401
    MAX_PAGE, WhoAmI, ReadWorkflows, ReadRuns, ReadRunInstances, ReadRun, ReadStats, ReadVersions, ReadInstance,
    ReadEvents, ReadCounts,
    ReadInbox, ReadSpec, ReadSchema, OperatorRead, operator_reads, READ_TYPES,
)
from flow45.messages.replies import (  # noqa: F401
    Reply, Refused, InstanceState, RunState, ValidatedTeam, Validated, RunList, RunInstancesList, Identity,
    WorkflowList, EventList,
    StatusCounts, InboxTask, Paused, Taken, Inbox, VersionDocument, RESULTS, reply_to,
)
