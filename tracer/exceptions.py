"""One exception tree for the whole core library.

::

    TracerError
    ├── ConfigurationError           the service cannot start as configured
    ├── InvalidInput                 a field is malformed (bad GTIN check digit, ...); carries pointer
    ├── NotFound                     an unknown lot, parcel, actor or job
    ├── AuthenticationFailed         no API key or an unknown one
    ├── PermissionDenied             the actor's role may not do this
    │   └── SignatureRequired        a self-custody actor's events must arrive signed
    ├── Conflict                     the request clashes with recorded state
    │   ├── StepOutOfOrder           the lot or parcel is not in a state that allows the step
    │   ├── DuplicateRecord          a lot, parcel, document or actor that exists already
    │   └── OverRelease              a split or release above the remaining balance
    ├── DocumentsMismatch            the three documents of an order do not match
    └── ChainError                   anything the chain layer could not do
        ├── ChainUnavailable         the node does not answer
        ├── ContractReverted         the registry refused a call (carries the custom error and its args)
        └── CompilerError            the Solidity compiler failed or is missing

The API maps this tree to HTTP status codes in one place (``api/problems.py``).
"""

from __future__ import annotations

from typing import Any, ClassVar


class TracerError(Exception):
    """Base of every error raised by the tracer core."""

    #: The short, user-facing title of a problem document of this kind; None: the docstring's first line.
    title: ClassVar[str | None] = None


class WouldBlock(Exception):
    """A call told not to block would have to wait (for the node, or for the database's write lock).

    Not a TracerError: it never reaches a client. The scan raises it on the event loop and is then run again in
    a thread, where waiting is harmless (``api.routes.scan``).
    """


class ConfigurationError(TracerError):
    """The service cannot start as configured; the message says what to change."""


class InvalidInput(TracerError):
    """A field of a request is malformed; ``pointer`` is a JSON pointer to it."""

    title = "The request is malformed"

    def __init__(self, message: str, *, pointer: str | None = None) -> None:
        self.pointer = pointer
        self.message = message
        super().__init__(f"{pointer}: {message}" if pointer else message)


class NotFound(TracerError):
    """An unknown lot, parcel, actor or capture job."""

    def __init__(self, kind: str, key: str) -> None:
        self.kind = kind
        self.key = key
        super().__init__(f"unknown {kind}: {key}")


class AuthenticationFailed(TracerError):
    """No API key was given, or the key is unknown."""


class PermissionDenied(TracerError):
    """The actor's role does not allow this action."""

    def __init__(self, actor: str, role: str, needed: str) -> None:
        self.actor = actor
        self.role = role
        self.needed = needed
        super().__init__(f"actor {actor!r} has role {role!r}; this needs {needed}")


class SignatureRequired(PermissionDenied):
    """A self-custody actor's events must arrive signed by its own key (EIP-712), not relayed unsigned."""

    def __init__(self, actor: str) -> None:
        TracerError.__init__(
            self,
            f"actor {actor!r} keeps its own key: its events must arrive signed with EIP-712, "
            "which this version does not accept yet; use a custodial actor (no --address)",
        )
        self.actor = actor
        self.role = ""
        self.needed = "a custodial key"


class Conflict(TracerError):
    """The request clashes with what is already recorded."""


class StepOutOfOrder(Conflict):
    """The lot or parcel is not in a state that allows this step."""

    def __init__(self, subject: str, step: str, state: str) -> None:
        self.subject = subject
        self.step = step
        self.state = state
        super().__init__(f"{subject} is {state}; {step} is not allowed now")


class DuplicateRecord(Conflict):
    """A lot, parcel, document or actor that exists already."""

    def __init__(self, kind: str, key: str) -> None:
        self.kind = kind
        self.key = key
        super().__init__(f"{kind} {key} exists already")


class OverRelease(Conflict):
    """A split or release above what remains of the lot."""

    def __init__(self, lot: str, requested: int, available: int) -> None:
        self.lot = lot
        self.requested = requested
        self.available = available
        super().__init__(f"lot {lot}: {requested} requested, only {available} available")


class DocumentsMismatch(TracerError):
    """The order, payment and waybill of a parcel do not match; ``problems`` lists why."""

    title = "The order, payment and waybill of the parcel do not match"

    def __init__(self, parcel: str, problems: list[str]) -> None:
        self.parcel = parcel
        self.problems = problems
        super().__init__(f"documents of parcel {parcel} do not match: " + "; ".join(problems))


class ChainError(TracerError):
    """The chain layer could not do what was asked."""


class ChainUnavailable(ChainError):
    """The Ethereum node does not answer."""

    def __init__(self, rpc_url: str, reason: str) -> None:
        self.rpc_url = rpc_url
        self.reason = reason
        super().__init__(f"node {rpc_url} unavailable: {reason}")


class ContractReverted(ChainError):
    """The registry refused a call with a custom error (``name``) and its decoded ``args``."""

    title = "The registry refused the step"

    def __init__(self, name: str, args: dict[str, Any] | None = None) -> None:
        self.name = name
        self.args_ = args or {}
        detail = ", ".join(f"{k}={v}" for k, v in self.args_.items())
        super().__init__(f"{name}({detail})")


class CompilerError(ChainError):
    """The Solidity compiler is missing or failed; the message says what to do."""
