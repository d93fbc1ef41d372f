"""One error hierarchy; each error carries its exit code. Only the CLI turns them into exits."""

from __future__ import annotations

# Exit codes (docs/exit-codes.md); pinned by tests.
OK = 0
FAILED = 1
BAD_INPUT = 2
PARTIAL = 3
REFUSED = 4
INTERRUPTED = 130   # SIGINT (Ctrl-C)
TERMINATED = 143    # SIGTERM (128 + 15), as a shell reports a process SIGTERM ended


class VmctlError(Exception):
    """An error with one clear sentence, an optional fix, and an exit code."""

    exit_code = FAILED

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}" if self.hint else self.message


class InputError(VmctlError):
    """The user's input is wrong: a flag, an expression, an ID, a name that does not exist."""

    exit_code = BAD_INPUT


class ConfigError(InputError):
    """The configuration file is unreadable or invalid."""


class NotFoundError(InputError):
    """A subscription, resource group or VM named by the user does not exist."""


class CredentialError(VmctlError):
    """No usable credential, or the service refused it."""


class AccessDeniedError(VmctlError):
    """Authenticated, but not authorised (403)."""


class EndpointError(VmctlError):
    """The ARM endpoint is unreachable or its certificate is not trusted."""


class AzureError(VmctlError):
    """Any other error answer from Azure."""


class GuardRefusal(VmctlError):
    """A safety guard refused the run."""

    exit_code = REFUSED
