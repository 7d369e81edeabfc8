"""Every error the library raises, with its message template, in one place.

Callers (the CLI, a Cinder driver) catch :class:`IscsiHelperError` and show
``str(err)``: one line that names what went wrong. Templates use named
``%(field)s`` placeholders so a message never depends on argument order, and
a template that cannot be filled still yields a readable message rather than
a second exception hiding the first.
"""

from __future__ import annotations

from typing import Any

from iscsi_helper import secretmask


class IscsiHelperError(Exception):
    """Base of every error raised on purpose by iscsi-helper.

    The message is masked when the error is made: every secret the
    operation has declared (:mod:`iscsi_helper.secretmask`) is replaced by
    ``***``, whatever characters it holds, so no caller can log it.
    """

    template: str = "An unknown iscsi-helper error occurred."
    #: What the failed operation left behind, once it had begun changing
    #: things (see :meth:`leaving`); None: nothing was changed, or not known.
    state_left: str | None = None

    def __init__(self, message: str | None = None, **fields: Any) -> None:
        self.fields = fields
        if message is None:
            try:
                message = self.template % fields
            except (KeyError, TypeError, ValueError):
                message = f"{self.template} {fields!r}"
        self.message = secretmask.mask(message)
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message

    def leaving(self, state: str) -> IscsiHelperError:
        """Say, on the same line, what the operation left (the caller re-raises ``self``).

        An operation that fails after its first change cannot promise
        "nothing was changed"; the one line an operator reads then says
        what is there now, and that ``reconcile`` settles it.
        """
        if self.state_left is None:
            self.state_left = state
            self.message = secretmask.mask(f"{self.message.rstrip('. ')}; state left: {state}")
            self.args = (self.message,)
        return self


class Refused(IscsiHelperError):
    """Input or configuration refused before any lock, file or tool was touched (CLI exit 2)."""


class InvalidInput(Refused):
    """A value supplied by the caller cannot be used; nothing was changed."""

    template = "Invalid %(field)s %(value)s: %(reason)s."


class InvalidConnector(InvalidInput):
    template = "Invalid connector: %(reason)s."


class InvalidConfiguration(Refused):
    template = "Invalid configuration: %(reason)s."


class UnknownTargetHelper(InvalidConfiguration):
    template = "Unknown target_helper %(name)r; valid helpers are: %(valid)s."


class AccessDenied(InvalidConfiguration):
    """This process cannot write a path the helper writes itself; found before any change."""

    template = "%(option)s %(path)s: %(problem)s; %(fix)s"


class MissingDependency(InvalidConfiguration):
    """An option needs a Python package that is not installed."""

    template = "%(option)s needs the Python package %(package)s, which is not installed: %(fix)s"


class ExportInUse(InvalidInput):
    """A change that would pull the disk from under connected initiators, refused unless forced."""

    template = (
        "Volume %(volume_id)s is connected (%(connected)s): exporting %(new)s instead of "
        "%(old)s would swap the disk under it; disconnect first, or force it "
        "(iscsi-helper export --force)"
    )


class OperationFailed(IscsiHelperError):
    """A failure after the operation's first change that no narrower type names.

    A value refused after the first change (say a tool's output that does
    not parse) is no longer "invalid input, nothing was changed": it
    becomes this, with the state left said on the same line.
    """

    template = "%(operation)s failed after it had begun: %(reason)s"


class LockTimeout(IscsiHelperError):
    """Another process held a lock for longer than ``lock_timeout``; nothing was changed."""

    template = (
        "Gave up after %(waited).1f s waiting for lock %(lock)s, held by another "
        "process (option lock_timeout); nothing was changed"
    )


class ExportNotFound(IscsiHelperError):
    template = "No export found for volume %(volume)s."


class ExportNotLive(IscsiHelperError):
    """The export is persisted but its target is not running (after a reboot, say)."""

    template = (
        "The export of volume %(volume)s is persisted but its target is not live; "
        "bring it back with 'iscsi-helper ensure %(volume)s'"
    )


class CoordinationError(IscsiHelperError):
    """The coordination backend (coordination_url) could not be used; nothing was changed."""

    template = "Cannot take lock %(lock)s through coordination_url: %(reason)s"


class TargetCreateFailed(IscsiHelperError):
    template = "Failed to create iSCSI target for volume %(volume_id)s: %(reason)s"


class TargetRemoveFailed(IscsiHelperError):
    template = "Failed to remove iSCSI target for volume %(volume_id)s: %(reason)s"


class PersistenceError(IscsiHelperError):
    template = "Cannot use persisted export file %(path)s: %(reason)s"


class CommandError(IscsiHelperError):
    """Base for failures of an external target tool."""


class CommandNotFound(CommandError):
    template = "%(command)s not found on PATH; %(hint)s"


class CommandNotExecutable(CommandError):
    template = "%(command)s at %(path)s is not executable; %(hint)s"


class CommandTimedOut(CommandError):
    template = "%(command)s did not finish within %(timeout)s s and was killed (option target_tool_timeout)"


class CommandFailed(CommandError):
    """A tool ran and exited with an unexpected code.

    stdout/stderr are kept so a helper can recognise documented failure
    strings (chiscsi's ``NOT found``) without parsing the message.
    """

    template = "%(command)s exited with code %(exit_code)s: %(detail)s"

    def __init__(self, *, command: str, exit_code: int, stdout: str, stderr: str) -> None:
        detail = (stderr.strip() or stdout.strip() or "no output").splitlines()
        super().__init__(command=command, exit_code=exit_code, detail=detail[0] if detail else "no output")
        self.command = command
        self.exit_code = exit_code
        self.stdout = stdout
        self.stderr = stderr


class ToolRefused(CommandFailed):
    """A tool refused for a reason its adapter recognised; the caller may expect it.

    Adapters (``iscsi_helper.adapters``) raise the subclasses below instead
    of a plain CommandFailed, so helpers decide on the type, never on an
    exit number or a phrase in stderr. The message stays the tool's.
    """

    @classmethod
    def from_failure(cls, failure: CommandFailed) -> ToolRefused:
        return cls(
            command=failure.command, exit_code=failure.exit_code, stdout=failure.stdout, stderr=failure.stderr
        )


class AlreadyPresent(ToolRefused):
    """What was to be added is there already (a target, LUN, account, binding or ACL rule)."""


class NameInUse(AlreadyPresent):
    """A target of that name exists already (IET tells this apart from a taken tid)."""


class TidInUse(AlreadyPresent):
    """Another target holds the requested tid (IET tells this apart from a taken name)."""


class NotPresent(ToolRefused):
    """What was to be removed, changed or shown is not there."""


class NoSuchTarget(NotPresent):
    pass


class NoSuchAccount(NotPresent):
    pass


class NoSuchAclRule(NotPresent):
    pass


class TargetHasSessions(ToolRefused):
    """The target still has sessions, so the tool will not delete it."""


class ToolOutputError(CommandError):
    template = "Unexpected output from %(command)s: %(reason)s"


class TargetBusy(TargetRemoveFailed):
    """A remove found initiators still logged in; ``reason`` says what state was left.

    A subclass of :class:`TargetRemoveFailed` so callers that already catch
    that keep working, while those that care can tell "busy" apart.
    """


class CommandLockBusy(CommandError):
    """A tool that runs one instance per host kept refusing: another program held its lock."""

    template = (
        "%(command)s could not run: another %(tool)s held its host-wide lock through "
        "%(attempts)s attempts over %(waited).1f s (%(refusal)r); wait for it to finish "
        "or raise option %(option)s"
    )
