"""The whole configuration checked once, when a helper is made: before any lock, file or tool.

oslo.config converts an option's value only when it is read, so a bad
``target_port`` or ``use_chap_auth = maybe`` used to surface as a
traceback halfway through an operation, after files or targets had been
touched. Here every option is read up front and each problem becomes one
:class:`InvalidConfiguration` line naming the option: its type and range
(finite numbers only: ``nan`` and ``inf`` pass oslo's ``min``), a ``$``
that names no option (oslo's own message names the wrong one), the
``volume_name_template`` and the names it builds, the portals, the
configured CHAP account, and paths of the right kind.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, Literal

from oslo_config import cfg

from iscsi_helper import options, specs
from iscsi_helper.exception import InvalidConfiguration, InvalidInput
from iscsi_helper.formats import make_portal, validate_bindable_ip, validate_volume_name

#: ``directory``: a directory, or a path one can be created at; ``file``: not
#: a directory (a regular file, or a path one can be created at).
PathKind = Literal["directory", "file"]

#: Options holding a path that every helper uses, and what kind of thing must be there.
COMMON_PATHS: tuple[tuple[str, str | None, PathKind], ...] = (
    ("volumes_dir", None, "directory"),
    ("lock_path", "oslo_concurrency", "directory"),
)

_REFERENCE = re.compile(r"\$(?:\{([^}]*)\}|([A-Za-z_][A-Za-z0-9_.]*))")
_SAMPLE_ID = "1"


def _fail(option: str, problem: str) -> InvalidConfiguration:
    return InvalidConfiguration(reason=f"option {option}: {problem.rstrip('.')}")


def _raw(conf: cfg.ConfigOpts, opt: cfg.Opt, group: str | None) -> Any:
    """The value as written (before ``$`` substitution), for an error message; None if unknown.

    oslo.config offers no public way to read it, so this looks inside and
    gives up quietly: it only improves a message. A secret option's value
    is never shown.
    """
    if opt.secret:
        return None
    try:
        info = conf._get_opt_info(opt.dest, group)
        if info.get("override") is not None:
            return info["override"]
        namespace = getattr(conf, "_namespace", None)
        if namespace is None:
            return None
        names = [(group or "DEFAULT", opt.dest)]
        names += [(d.group or group or "DEFAULT", d.name) for d in opt.deprecated_opts if d.name]
        value, _location = namespace._get_file_value(names)
        return value[-1] if isinstance(value, list) and value else value
    except Exception:  # noqa: BLE001 - a best-effort look for a better message
        return None


def _known(conf: cfg.ConfigOpts, reference: str, group: str | None) -> bool:
    group_name, _, option = reference.rpartition(".")
    try:
        conf._get_opt_info(option, group_name or group)
    except (cfg.NoSuchOptError, cfg.NoSuchGroupError):
        if group_name or group is None:
            return False
        try:  # oslo falls back to [DEFAULT] for an unqualified name
            conf._get_opt_info(option, None)
        except (cfg.NoSuchOptError, cfg.NoSuchGroupError):
            return False
    return True


def _substitution_problem(conf: cfg.ConfigOpts, opt: cfg.Opt, group: str | None) -> str:
    raw = _raw(conf, opt, group)
    texts = raw if isinstance(raw, list) else [raw] if isinstance(raw, str) else []
    unknown = [
        m.group(1) or m.group(2) for text in texts for m in _REFERENCE.finditer(text.replace("$$", ""))
    ]
    unknown = [name for name in unknown if not _known(conf, name, group)]
    where = f"{raw!r}: " if raw is not None else ""
    what = f"'${unknown[0]}' names no option" if unknown else "a '$' reference names no option"
    return (
        f"{where}{what} ('$' starts a reference to another option, e.g. $state_path; "
        "write '$$' for a literal '$')"
    )


def _read(conf: cfg.ConfigOpts, opt: cfg.Opt, group: str | None) -> Any:
    shown = f"[{group}] {opt.dest}" if group else opt.dest
    source = conf if group is None else getattr(conf, group)
    try:
        value = getattr(source, opt.dest)
    except cfg.ConfigSourceValueError as err:
        problem = str(err).split(" is not valid: ", 1)[-1]
        if problem.startswith(("invalid literal for int()", "could not convert string to float")):
            problem = "not a number"
        raw = _raw(conf, opt, group)
        raise _fail(shown, (f"{raw!r}: " if raw is not None else "") + problem) from None
    except (cfg.NoSuchOptError, cfg.TemplateSubstitutionError):
        raise _fail(shown, _substitution_problem(conf, opt, group)) from None
    except (cfg.Error, ValueError) as err:
        raise _fail(shown, str(err).strip()) from None
    if isinstance(opt, cfg.FloatOpt) and value is not None and not math.isfinite(value):
        raise _fail(shown, f"{value!r} is not a finite number of seconds")
    return value


def check_options(conf: cfg.ConfigOpts) -> None:
    """Every registered option of ours reads as its type and range say."""
    for group, opts in options.list_opts():
        for opt in opts:
            _read(conf, opt, None if group == "DEFAULT" else group)


def check_template(conf: cfg.ConfigOpts) -> None:
    """``volume_name_template``: exactly one ``%s`` and no other ``%``, building valid names.

    Names are file names (records, locks) and IQN tails, so what the
    template builds must be a single valid path component: no ``/``, no
    leading ``.``, nothing an IQN cannot carry.
    """
    template = conf.volume_name_template
    if template.count("%s") != 1 or template.count("%") != 1:
        raise _fail("volume_name_template", f"{template!r} must contain '%s' exactly once and no other '%'")
    try:
        validate_volume_name(template % _SAMPLE_ID)
    except InvalidInput as err:
        raise _fail(
            "volume_name_template",
            f"{template!r} builds names such as {template % _SAMPLE_ID!r}, which are "
            f"not valid volume names: {err.fields.get('reason', err)}",
        ) from None


def check_path(conf: cfg.ConfigOpts, option: str, group: str | None, kind: PathKind) -> None:
    """What is at the option's path is of the right kind, or one can be created there."""
    value = getattr(conf if group is None else getattr(conf, group), option)
    shown = f"[{group}] {option}" if group else option
    if not value:
        raise _fail(shown, "must not be empty")
    path = os.path.abspath(value)
    if os.path.lexists(path):
        if kind == "directory" and not os.path.isdir(path):
            raise _fail(shown, f"{value!r} is not a directory")
        if kind == "file" and os.path.isdir(path):
            raise _fail(shown, f"{value!r} is a directory, not a file")
        return
    parent = os.path.dirname(path)
    while not os.path.lexists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise _fail(shown, f"{value!r} cannot be created: {parent!r} is not a directory")


def check_target_settings(conf: cfg.ConfigOpts) -> None:
    """Portals, the IQN prefix and the configured CHAP account, as every export will use them."""
    checks: list[tuple[str, Callable[[], object]]] = [
        ("target_ip_address", lambda: validate_bindable_ip(conf.target_ip_address)),
        *(
            ("target_secondary_ip_addresses", partial(validate_bindable_ip, address))
            for address in conf.target_secondary_ip_addresses
        ),
        ("target_port", lambda: make_portal("127.0.0.1", conf.target_port)),
        ("target_prefix", lambda: specs.target_iqn(conf, conf.volume_name_template % _SAMPLE_ID)),
        ("chap_username / chap_password", lambda: specs.configured_chap(conf)),
    ]
    for option, check in checks:
        try:
            check()
        except InvalidInput as err:
            raise _fail(option, str(err)) from None


def check_configuration(conf: cfg.ConfigOpts, paths: Iterable[tuple[str, str | None, PathKind]] = ()) -> None:
    """Everything above, in order; ``paths`` adds a helper's own path options."""
    check_options(conf)
    check_template(conf)
    for option, group, kind in (*COMMON_PATHS, *paths):
        check_path(conf, option, group, kind)
    check_target_settings(conf)
