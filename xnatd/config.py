"""The YAML configuration (SPEC section 2), turned into frozen objects at load.

Every problem is collected with its key path (``receivers[1].port: ...``) so that
``xnatd check-config`` reports all of them at once. Per file, only look-ups remain.
"""

from __future__ import annotations

import difflib
import os
import re
import socket
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from xnatd.anon.chain import Chain
from xnatd.anon.lookup import LookupTableError, load_lookup_table
from xnatd.anon.profile import OPTIONS, PROFILES, Profile
from xnatd.anon.script import Script, ScriptError
from xnatd.anon.script import load as load_script
from xnatd.routing import UNASSIGNED, Rule, RuleSet, project_resolver
from xnatd.scp.admission import AllowEntry, check_ae_title
from xnatd.tls import TLSError, TLSSettings, server_context
from xnatd.units import parse_duration, parse_size
from xnatd.users import ROLES, USER_NAME, UsersError, UsersFile

DEFAULT_PATHS = ("/etc/xnatd/xnatd.yaml", "etc/xnatd.yaml")
PREARCHIVE_POLICIES = ("manual", "auto-archive", "auto-archive-overwrite")
MAX_WORKERS = 32
COMMITMENT_MODES = ("off", "durable", "archived")
_PROJECT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ConfigError(Exception):
    """The configuration does not validate; ``problems`` lists each with its key path."""

    def __init__(self, path: Path | str, problems: list[str]) -> None:
        self.path = Path(path)
        self.problems = problems
        super().__init__(f"{path}: " + "; ".join(problems))


PHI_MODES = ("hold", "flag", "off")


@dataclass(frozen=True)
class PhiCheck:
    """``site.phi_check`` (SPEC 10.2): hold a session with findings, list them, or skip."""

    headers: str = "hold"
    pixels: str = "flag"  # also "all": every image checked, findings hold


@dataclass(frozen=True)
class Site:
    """``site``: this installation's ID, data directory, timers and site-wide scripts."""

    id: str
    data_dir: Path
    session_idle_timeout: float
    anonymization: Path | None
    min_free_disk: int
    script: Script | Chain | None = None  # the parsed site script, or chain of steps
    uid_secret: Path | None = None  # the key of the profile's UID and date hashes
    uid_secret_missing: bool = False  # absent, and loaded without creating it (check-config)
    node: str = ""  # this daemon's name among the nodes sharing an index (hostname)
    lease: float = 60.0  # how long a dead node's open associations hold their sessions
    phi_check: PhiCheck = PhiCheck()


@dataclass(frozen=True)
class Receiver:
    """One entry of ``receivers``: a DICOM listener, who may send to it, and its routing."""

    ae_title: str
    port: int
    host: str
    allow: tuple[AllowEntry, ...] = ()
    anonymize: bool = True
    default_project: str | None = None
    routing: RuleSet = RuleSet()
    tls: TLSSettings | None = None  # DICOM over TLS only (SPEC 10.4)
    storage_commitment: str = "off"  # off | durable | archived (SPEC 10.4)
    commitment_peers: Mapping[str, tuple[str, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class CommandStep:
    """``{run: [prog, args], timeout: 10m}``: run after each archive."""

    run: tuple[str, ...]
    timeout: float = 600.0


@dataclass(frozen=True)
class ProtocolRule:
    """One protocol check rule: how many scans of a type a session must have."""

    type: str  # matched against scan type and series description, any case
    min: int = 1
    max: int | None = None


@dataclass(frozen=True)
class ProtocolStep:
    """``{protocol: [{type: T1, min: 1}, ...]}``: the built-in protocol check."""

    rules: tuple[ProtocolRule, ...]


AutorunStep = CommandStep | ProtocolStep


@dataclass(frozen=True)
class Project:
    """One entry of ``projects``: its prearchive policy, scripts and autorun steps."""

    id: str
    aliases: tuple[str, ...] = ()
    prearchive: str = "manual"
    quarantine: bool = False
    anonymization: Path | None = None
    autorun: tuple[AutorunStep, ...] = ()
    script: Script | Chain | None = None  # the parsed project script, or chain of steps


@dataclass(frozen=True)
class User:
    """One user of the HTTP API: the SHA-256 of their token and their role in each project."""

    name: str
    token_sha256: str
    admin: bool = False
    projects: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Http:
    """``http``: where the HTTP API and web pages listen, and their TLS."""

    host: str
    port: int
    tls: TLSSettings | None = None  # HTTPS only


@dataclass(frozen=True)
class Logging:
    """``logging``: the log format (auto, console or json) and level."""

    format: str = "auto"  # console lines on a terminal, JSON elsewhere (systemd, files)
    level: str = "info"


@dataclass(frozen=True)
class ImportLimits:
    """``import``: limits on an uploaded archive (unpacked bytes, ratio, entries)."""

    max_unpacked: int = 64 * 2**30
    max_ratio: float = 200.0
    max_entries: int = 500_000


@dataclass(frozen=True)
class Inbox:
    """``inbox``: whether the drop folder is watched, and how long a file must settle."""

    settle: float = 10.0  # unchanged this long before a dropped file is imported
    enabled: bool = True


@dataclass(frozen=True)
class Associations:
    """How long a connection may stay silent and how many one peer may hold."""

    artim_timeout: float = 10.0  # PS3.8 ARTIM: connected, no A-ASSOCIATE-RQ yet
    max_open: int = 64  # connections at once, per receiving process
    max_per_peer: int = 32  # connections at once from one address, per receiving process


@dataclass(frozen=True)
class Config:
    """The whole validated configuration file, frozen; a reload builds a new one."""

    path: Path
    site: Site
    index: str
    receivers: tuple[Receiver, ...]
    routing: RuleSet
    projects: Mapping[str, Project]
    http: Http | None
    users: Mapping[str, User]
    logging: Logging
    resolve_project: Callable[[str], str | None] = field(compare=False, repr=False)
    imports: ImportLimits = ImportLimits()
    workers: int = 1  # receiving processes (scp/handoff.py); "auto" in the file: one per core
    inbox: Inbox = Inbox()
    users_file: Path | None = None  # ``users: FILE``: where `xnatd users` writes
    associations: Associations = Associations()

    def project(self, project_id: str) -> Project | None:
        """The configured project, or None (Unassigned has no configuration)."""
        return self.projects.get(project_id)


def default_config_path() -> Path:
    """``$XNATD_CONFIG``, then ``/etc/xnatd/xnatd.yaml``, then ``etc/xnatd.yaml``."""
    env = os.environ.get("XNATD_CONFIG")
    if env:
        return Path(env)
    for candidate in DEFAULT_PATHS:
        if Path(candidate).is_file():
            return Path(candidate)
    return Path(DEFAULT_PATHS[-1])


def current_users(config: Config) -> Mapping[str, User]:
    """The users as the users file holds them now (``xnatd users`` may have written it
    since the configuration was loaded); the loaded ones if it does not validate."""
    if config.users_file is None:
        return config.users
    parser = _Parser(config.path)
    users = parser.users(str(config.users_file), config.projects)
    return config.users if parser.problems else users


def load(path: Path | str, *, create_secret: bool = True) -> Config:
    """Read and validate a configuration file.

    ``create_secret=False`` writes nothing: a missing ``site.uid_secret`` key file is
    only checked to be creatable, and reported in ``site.uid_secret_missing`` (the
    profiles then hold no key: such a configuration must not anonymize anything).

    Raises:
        ConfigError: with every problem found, each naming its key path.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(path, [f"cannot read the file: {exc.strerror or exc}"]) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(path, [f"{where}not valid YAML: {problem}"]) from None
    if raw is None:
        raw = {}
    parser = _Parser(path, create_secret=create_secret)
    config = parser.parse(raw)
    if parser.problems:
        raise ConfigError(path, parser.problems)
    assert config is not None
    return config


def _creatable_problem(path: Path) -> str | None:
    """Why a file could not be created at ``path``, or None; creates nothing that stays
    (a probe file in its folder, removed at once: ``os.access`` is always yes for root)."""
    if not path.parent.is_dir():
        return f"{path} cannot be created: {path.parent} is not a folder"
    try:
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as exc:
        return f"{path} cannot be created: {exc.strerror or exc}"
    return None


def unknown_key(name: object, allowed: tuple[str, ...]) -> str:
    """``unknown key``, with the allowed key the typo most likely meant."""
    close = difflib.get_close_matches(str(name).lower(), allowed, n=1, cutoff=0.6)
    return f"unknown key; did you mean {close[0]}?" if close else "unknown key"


class _Parser:
    """Walks the YAML tree once, collecting problems instead of stopping at the first."""

    def __init__(self, path: Path, *, create_secret: bool = True) -> None:
        self.path = path
        self.create_secret = create_secret
        self.missing_secret: Path | None = None  # the absent key, when not created
        self.base = path.resolve().parent
        self.problems: list[str] = []
        self.secret_value: Any = None  # site.uid_secret, read once the site is parsed
        self.data_dir = self.base

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{key}: {message}")

    def mapping(self, value: Any, key: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(key, f"must be a mapping, not {type(value).__name__}")
            return {}
        for name in value:
            if name not in allowed:
                self.problem(f"{key}.{name}" if key else str(name), unknown_key(name, allowed))
        return value

    def boolean(self, value: Any, key: str, default: bool) -> bool:
        if value is None:
            return default
        if not isinstance(value, bool):
            self.problem(key, f"{value!r} is not true or false")
            return default
        return value

    def string(self, value: Any, key: str, default: str | None = None) -> str | None:
        if value is None:
            return default
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            self.problem(key, f"{value!r} is not a string")
            return default
        return str(value)

    def duration(self, value: Any, key: str, default: float) -> float:
        if value is None:
            return default
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.problem(key, str(exc))
            return default

    def size(self, value: Any, key: str, default: int) -> int:
        if value is None:
            return default
        try:
            return parse_size(value)
        except ValueError as exc:
            self.problem(key, str(exc))
            return default

    def anonymization(
        self, value: Any, key: str, lookup: Any = None
    ) -> tuple[Path | None, Script | Chain | None]:
        """``anonymization``: a script path (a Script), or a profile or a list of profiles
        and script paths (a Chain, applied in order). The path is the first script's."""
        if not isinstance(value, dict | list):
            return self.script(value, key, lookup)
        items = value if isinstance(value, list) else [value]
        steps: list[Script | Profile] = []
        first: Path | None = None
        lookup_used = False
        for number, item in enumerate(items):
            where = f"{key}[{number}]" if isinstance(value, list) else key
            if isinstance(item, dict):
                profile = self.profile(item, where)
                if profile is not None:
                    steps.append(profile)
                continue
            path, script = self.script(item, where, lookup, lookup_key=f"{key}_lookup")
            first = first or path
            lookup_used = lookup_used or (script is not None and "lookup" in script.functions)
            if script is not None:
                steps.append(script)
        if not items:
            self.problem(key, "is an empty list")
        if lookup is not None and not lookup_used and not self.problems:
            self.problem(f"{key}_lookup", "is set but no script in the list calls lookup[]")
        return first, Chain(tuple(steps))

    def profile(self, item: dict[str, Any], key: str) -> Profile | None:
        """``{profile: basic, options: [...]}``; the secret is the site's, set later."""
        raw = self.mapping(item, key, ("profile", "options"))
        name = raw.get("profile")
        if name not in PROFILES:
            self.problem(
                f"{key}.profile", f"{name!r} is not a profile (known: {', '.join(PROFILES)})"
            )
            return None
        options = raw.get("options") or []
        if not isinstance(options, list):
            self.problem(f"{key}.options", "must be a list of option names")
            return None
        bad = [o for o in options if o not in OPTIONS]
        for option in bad:
            close = difflib.get_close_matches(str(option).lower(), OPTIONS, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else f" (known: {', '.join(OPTIONS)})"
            self.problem(f"{key}.options", f"{option!r} is not an option of {name}{hint}")
        if bad:
            return None
        return Profile(frozenset(options), b"")

    def uid_secret(self, value: Any, data_dir: Path) -> tuple[Path, bytes] | None:
        """``site.uid_secret``: the key file of the profile's hashes (``uid.key`` beside the
        configuration by default), outside the data directory; created (0600) if missing."""
        text = self.string(value, "site.uid_secret", "uid.key") or "uid.key"
        path = (self.base / text).resolve()
        if path.is_relative_to(data_dir):
            self.problem("site.uid_secret", f"{path} is inside the data directory {data_dir}")
            return None
        if not self.create_secret and not path.exists():
            problem = _creatable_problem(path)
            if problem is not None:
                self.problem("site.uid_secret", problem)
            else:
                self.missing_secret = path
            return None
        try:
            if not path.exists():
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as out:
                    out.write(os.urandom(32).hex() + "\n")
            secret = path.read_bytes().strip()
        except OSError as exc:
            self.problem(
                "site.uid_secret", f"{path} cannot be read or created: {exc.strerror or exc}"
            )
            return None
        if len(secret) < 16:
            self.problem("site.uid_secret", f"{path} holds fewer than 16 bytes")
            return None
        return path, secret

    def script(
        self, value: Any, key: str, lookup: Any = None, lookup_key: str | None = None
    ) -> tuple[Path | None, Script | None]:
        """A DicomEdit 6 script, parsed now: a script that does not parse is a problem;
        so is one calling lookup[] without ``anonymization_lookup`` beside it."""
        text = self.string(value, key)
        table_key = lookup_key or f"{key}_lookup"
        table_text = self.string(lookup, table_key)
        if not text:
            if table_text and lookup_key is None:
                self.problem(table_key, "is set but there is no anonymization script")
            return None, None
        path = self.base / text
        try:
            script = load_script(path)
        except OSError as exc:
            self.problem(key, f"script {path} cannot be read: {exc.strerror or exc}")
            return path, None
        except ScriptError as exc:
            self.problem(key, str(exc))
            return path, None
        if table_text and (lookup_key is None or "lookup" in script.functions):
            table_path = self.base / table_text
            try:
                return path, script.with_lookup(load_lookup_table(table_path))
            except OSError as exc:
                self.problem(table_key, f"{table_path} cannot be read: {exc.strerror or exc}")
            except LookupTableError as exc:
                self.problem(table_key, str(exc))
        elif "lookup" in script.functions:
            self.problem(key, f"{path} calls lookup[]; name its table in {table_key}")
        return path, script

    def rules(self, value: Any, key: str) -> RuleSet:
        raw = self.mapping(value, key, ("project", "subject", "session"))
        compiled: dict[str, tuple[Rule, ...]] = {}
        for concept in ("project", "subject", "session"):
            items = raw.get(concept) or []
            if isinstance(items, str):
                items = [line for line in items.splitlines() if line.strip()]
            if not isinstance(items, list):
                self.problem(f"{key}.{concept}", "must be a list of rules")
                items = []
            rules = []
            for position, text in enumerate(items):
                try:
                    rules.append(Rule.parse(str(text)))
                except ValueError as exc:
                    self.problem(f"{key}.{concept}[{position}]", str(exc))
            compiled[concept] = tuple(rules)
        return RuleSet(**compiled)

    def parse(self, raw: Any) -> Config | None:
        top = self.mapping(
            raw,
            "",
            (
                "site",
                "index",
                "receivers",
                "routing",
                "projects",
                "http",
                "users",
                "logging",
                "import",
                "inbox",
                "workers",
                "associations",
            ),
        )
        site = self.site(top.get("site"))
        projects = self.projects(top.get("projects"))
        site, projects = self.keyed(site, projects)
        index = self.string(top.get("index"), "index", "sqlite") or "sqlite"
        if index != "sqlite" and not index.startswith(("postgresql://", "postgres://")):
            self.problem("index", f"{index!r} is neither sqlite nor a postgresql:// URL")
        receivers = self.receivers(top.get("receivers"), projects)
        routing = self.rules(top.get("routing"), "routing")
        http = self.http(top.get("http"))
        users = self.users(top.get("users"), projects)
        users_file = self.base / top["users"] if isinstance(top.get("users"), str) else None
        logging = self.logging(top.get("logging"))
        imports = self.import_limits(top.get("import"))
        inbox = self.inbox(top.get("inbox"))
        workers = self.workers(top.get("workers", "auto"))
        associations = self.associations(top.get("associations"))
        if self.problems:
            return None
        return Config(
            path=self.path,
            site=site,
            index=index,
            receivers=receivers,
            routing=routing,
            projects=projects,
            http=http,
            users=users,
            logging=logging,
            imports=imports,
            inbox=inbox,
            workers=workers,
            users_file=users_file,
            associations=associations,
            resolve_project=project_resolver({p.id: p.aliases for p in projects.values()}),
        )

    def keyed(self, site: Site, projects: dict[str, Project]) -> tuple[Site, dict[str, Project]]:
        """Site and projects with the site secret in their profiles (read, or created, only
        when a profile is configured)."""
        chains = [site.script] + [p.script for p in projects.values()]
        if not any(
            isinstance(c, Chain) and any(isinstance(s, Profile) for s in c.steps) for c in chains
        ):
            return site, projects
        loaded = self.uid_secret(self.secret_value, self.data_dir)
        if loaded is None:
            if self.missing_secret is not None:  # check-config: run creates it
                site = replace(site, uid_secret=self.missing_secret, uid_secret_missing=True)
            return site, projects
        path, secret = loaded

        def with_secret(chain: Script | Chain | None) -> Script | Chain | None:
            if not isinstance(chain, Chain):
                return chain
            return Chain(
                tuple(
                    Profile(step.options, secret) if isinstance(step, Profile) else step
                    for step in chain.steps
                )
            )

        site = replace(site, script=with_secret(site.script), uid_secret=path)
        projects = {
            key: replace(project, script=with_secret(project.script))
            for key, project in projects.items()
        }
        return site, projects

    def site(self, value: Any) -> Site:
        raw = self.mapping(
            value,
            "site",
            (
                "id",
                "data_dir",
                "session_idle_timeout",
                "anonymization",
                "anonymization_lookup",
                "min_free_disk",
                "node",
                "lease",
                "phi_check",
                "uid_secret",
            ),
        )
        site_id = self.string(raw.get("id"), "site.id", "XNAT") or "XNAT"
        if not re.fullmatch(r"[A-Za-z0-9_]{1,32}", site_id):
            self.problem("site.id", f"{site_id!r} must be 1 to 32 letters, digits or _")
        data_dir = self.string(raw.get("data_dir"), "site.data_dir", "../var") or "../var"
        script = self.anonymization(
            raw.get("anonymization"), "site.anonymization", raw.get("anonymization_lookup")
        )
        data_path = (self.base / data_dir).resolve()
        self.secret_value = raw.get("uid_secret")
        self.data_dir = data_path
        return Site(
            id=site_id,
            data_dir=data_path,
            session_idle_timeout=self.duration(
                raw.get("session_idle_timeout"), "site.session_idle_timeout", 300.0
            ),
            anonymization=script[0],
            min_free_disk=self.size(raw.get("min_free_disk"), "site.min_free_disk", 2**30),
            script=script[1],
            node=self.string(raw.get("node"), "site.node") or socket.gethostname(),
            lease=self.duration(raw.get("lease"), "site.lease", 60.0),
            phi_check=self.phi_check(raw.get("phi_check")),
        )

    def phi_check(self, value: Any) -> PhiCheck:
        raw = self.mapping(value, "site.phi_check", ("headers", "pixels"))
        modes = {}
        for key, default in (("headers", "hold"), ("pixels", "flag")):
            mode = self.string(raw.get(key), f"site.phi_check.{key}", default)
            allowed = (*PHI_MODES, "all") if key == "pixels" else PHI_MODES
            if mode not in allowed:
                self.problem(f"site.phi_check.{key}", f"{mode!r} is not {', '.join(allowed)}")
                mode = default
            modes[key] = mode or default
        return PhiCheck(**modes)

    def projects(self, value: Any) -> dict[str, Project]:
        raw = value if value is not None else {}
        if not isinstance(raw, dict):
            self.problem("projects", "must be a mapping of project ID to settings")
            return {}
        projects: dict[str, Project] = {}
        names_seen: dict[str, str] = {}
        for project_id, settings in raw.items():
            key = f"projects.{project_id}"
            project_id = str(project_id)
            if not _PROJECT_ID.match(project_id):
                self.problem(key, "a project ID has 1 to 64 letters, digits, _ or -")
                continue
            if project_id == UNASSIGNED:
                self.problem(key, f"{UNASSIGNED} is reserved for sessions without a project")
                continue
            body = self.mapping(
                settings,
                key,
                (
                    "aliases",
                    "prearchive",
                    "quarantine",
                    "anonymization",
                    "anonymization_lookup",
                    "autorun",
                ),
            )
            aliases = body.get("aliases") or []
            if not isinstance(aliases, list):
                self.problem(f"{key}.aliases", "must be a list")
                aliases = []
            aliases = tuple(str(alias) for alias in aliases)
            for name in (project_id, *aliases):
                other = names_seen.get(name.casefold())
                if other is not None and other != project_id:
                    self.problem(key, f"{name!r} already names project {other}")
                names_seen[name.casefold()] = project_id
            policy = self.string(body.get("prearchive"), f"{key}.prearchive", "manual")
            if policy not in PREARCHIVE_POLICIES:
                self.problem(
                    f"{key}.prearchive",
                    f"{policy!r} is not one of {', '.join(PREARCHIVE_POLICIES)}",
                )
            autorun = self.autorun(body.get("autorun"), f"{key}.autorun")
            script = self.anonymization(
                body.get("anonymization"),
                f"{key}.anonymization",
                body.get("anonymization_lookup"),
            )
            projects[project_id] = Project(
                id=project_id,
                aliases=aliases,
                prearchive=policy or "manual",
                quarantine=self.boolean(body.get("quarantine"), f"{key}.quarantine", False),
                anonymization=script[0],
                autorun=tuple(autorun),
                script=script[1],
            )
        return projects

    def autorun(self, value: Any, key: str) -> tuple[AutorunStep, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            self.problem(key, "must be a list of steps ({run: [...]} or {protocol: [...]})")
            return ()
        steps: list[AutorunStep] = []
        for position, item in enumerate(value):
            where = f"{key}[{position}]"
            raw = self.mapping(item, where, ("run", "timeout", "protocol"))
            if "run" in raw:
                command = raw["run"]
                if isinstance(command, str):
                    command = [command]
                if not isinstance(command, list) or not command:
                    self.problem(f"{where}.run", "must be a program and its arguments")
                    continue
                timeout = self.duration(raw.get("timeout"), f"{where}.timeout", 600.0)
                steps.append(CommandStep(tuple(str(part) for part in command), timeout))
            elif "protocol" in raw:
                rules = []
                for index, rule in enumerate(raw["protocol"] or []):
                    body = self.mapping(rule, f"{where}.protocol[{index}]", ("type", "min", "max"))
                    scan_type = self.string(body.get("type"), f"{where}.protocol[{index}].type")
                    if not scan_type:
                        self.problem(f"{where}.protocol[{index}].type", "is required")
                        continue
                    low, high = body.get("min", 1), body.get("max")
                    if not isinstance(low, int) or (high is not None and not isinstance(high, int)):
                        self.problem(f"{where}.protocol[{index}]", "min and max are counts")
                        continue
                    rules.append(ProtocolRule(scan_type, low, high))
                steps.append(ProtocolStep(tuple(rules)))
            else:
                self.problem(where, "a step has run: or protocol:")
        return tuple(steps)

    def receivers(self, value: Any, projects: Mapping[str, Project]) -> tuple[Receiver, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            self.problem("receivers", "must be a list")
            return ()
        receivers: list[Receiver] = []
        used: dict[tuple[str, int], int] = {}
        hosts: dict[int, tuple[str, int]] = {}
        for position, item in enumerate(value):
            key = f"receivers[{position}]"
            raw = self.mapping(
                item,
                key,
                (
                    "ae_title",
                    "port",
                    "host",
                    "allow",
                    "anonymize",
                    "default_project",
                    "routing",
                    "tls",
                    "storage_commitment",
                    "commitment_peers",
                ),
            )
            title = raw.get("ae_title")
            try:
                title = check_ae_title(title)
            except ValueError as exc:
                self.problem(f"{key}.ae_title", str(exc))
                title = None
            port = raw.get("port")
            if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
                self.problem(f"{key}.port", f"{port!r} is not a TCP port (1-65535)")
                port = None
            host = self.string(raw.get("host"), f"{key}.host", "0.0.0.0") or "0.0.0.0"
            if port is not None:
                earlier_host = hosts.get(port)
                if earlier_host is not None and earlier_host[0] != host:
                    self.problem(
                        f"{key}.host",
                        f"port {port} is bound on {earlier_host[0]} by "
                        f"receivers[{earlier_host[1]}]; AE titles sharing a port share its host",
                    )
                hosts.setdefault(port, (host, position))
            if title is not None and port is not None:
                if (title, port) in used:
                    self.problem(
                        f"{key}.port",
                        f"AE title {title} on port {port} is already used by "
                        f"receivers[{used[(title, port)]}]",
                    )
                used.setdefault((title, port), position)
            allow: list[AllowEntry] = []
            allow_raw = raw.get("allow") or []
            if not isinstance(allow_raw, list):
                self.problem(f"{key}.allow", "must be a list")
                allow_raw = []
            for index, entry in enumerate(allow_raw):
                try:
                    allow.append(AllowEntry.parse(entry))
                except ValueError as exc:
                    self.problem(f"{key}.allow[{index}]", str(exc))
            default_project = self.string(raw.get("default_project"), f"{key}.default_project")
            if default_project is not None and default_project not in projects:
                self.problem(
                    f"{key}.default_project", f"{default_project!r} is not a configured project"
                )
            tls = self.tls(raw.get("tls"), f"{key}.tls", client_certs=True)
            if port is not None:
                self.same_tls_on_port(port, tls, position, receivers)
            receivers.append(
                Receiver(
                    ae_title=title or "",
                    port=port or 0,
                    host=host,
                    allow=tuple(allow),
                    anonymize=self.boolean(raw.get("anonymize"), f"{key}.anonymize", True),
                    default_project=default_project,
                    routing=self.rules(raw.get("routing"), f"{key}.routing"),
                    tls=tls,
                    storage_commitment=self.choice(
                        raw.get("storage_commitment"),
                        f"{key}.storage_commitment",
                        COMMITMENT_MODES,
                    ),
                    commitment_peers=self.peers(
                        raw.get("commitment_peers"), f"{key}.commitment_peers"
                    ),
                )
            )
        return tuple(receivers)

    def tls(self, value: Any, key: str, client_certs: bool) -> TLSSettings | None:
        """``tls: {cert, key[, ca, require_client_cert]}``, its context built now so
        that an unreadable or mismatched file is reported by its key."""
        if value is None:
            return None
        allowed = ("cert", "key", "ca", "require_client_cert") if client_certs else ("cert", "key")
        raw = self.mapping(value, key, allowed)
        paths: dict[str, Path | None] = {}
        for name in ("cert", "key", "ca"):
            text = self.string(raw.get(name), f"{key}.{name}")
            paths[name] = self.base / text if text else None
            if text is None and name != "ca" and isinstance(value, dict):
                self.problem(f"{key}.{name}", "is required")
        required = self.boolean(raw.get("require_client_cert"), f"{key}.require_client_cert", False)
        if required and paths["ca"] is None:
            self.problem(f"{key}.require_client_cert", f"needs {key}.ca, the CA that signs peers")
            return None
        cert, private_key = paths["cert"], paths["key"]
        if cert is None or private_key is None:
            return None
        try:
            context = server_context(cert, private_key, paths["ca"], required)
        except TLSError as exc:
            self.problem(f"{key}.{exc.key}", str(exc))
            return None
        return TLSSettings(cert, private_key, paths["ca"], required, context)

    def choice(self, value: Any, key: str, allowed: tuple[str, ...]) -> str:
        """One of ``allowed`` (the first when unset); YAML's ``off`` reads as false."""
        if value is None or value is False:
            return allowed[0]
        if value not in allowed:
            self.problem(key, f"{value!r} is not one of {', '.join(allowed)}")
            return allowed[0]
        return str(value)

    def peers(self, value: Any, key: str) -> dict[str, tuple[str, int]]:
        """``{AE: host:port}``: where each requester takes reports on a new association."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(key, "must map AE titles to host:port")
            return {}
        peers: dict[str, tuple[str, int]] = {}
        for title, address in value.items():
            host, _, port = str(address).rpartition(":")
            if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
                self.problem(f"{key}.{title}", f"{address!r} is not host:port")
                continue
            peers[str(title)] = (host.strip("[]"), int(port))
        return peers

    def same_tls_on_port(
        self, port: int, tls: TLSSettings | None, position: int, earlier: list[Receiver]
    ) -> None:
        """AE titles sharing a port share its TLS: the handshake comes before the
        called AE title is known."""
        for index, other in enumerate(earlier):
            if other.port == port and other.tls != tls:
                self.problem(
                    f"receivers[{position}].tls",
                    f"port {port} is shared with receivers[{index}], whose tls differs; "
                    "AE titles sharing a port share its tls",
                )
                return

    def http(self, value: Any) -> Http | None:
        raw = self.mapping(value, "http", ("listen", "tls"))
        listen = self.string(raw.get("listen"), "http.listen")
        if value is None or listen is None:
            return None
        host, _, port_text = listen.rpartition(":")
        if not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
            self.problem("http.listen", f"{listen!r} is not HOST:PORT")
            return None
        tls = self.tls(raw.get("tls"), "http.tls", client_certs=False)
        return Http(host=host.strip("[]"), port=int(port_text), tls=tls)

    def users(self, value: Any, projects: Mapping[str, Project]) -> dict[str, User]:
        """Users in the config, or in the YAML file it names (``users: users.yaml``)."""
        if isinstance(value, str):
            try:  # a file not written yet holds no users
                value = UsersFile(self.base / value).read()
            except UsersError as exc:
                self.problem("users", str(exc))
                return {}
        raw = value if value is not None else {}
        if not isinstance(raw, dict):
            self.problem("users", "must be a mapping of user name to settings")
            return {}
        users: dict[str, User] = {}
        for name, settings in raw.items():
            key = f"users.{name}"
            if not USER_NAME.match(str(name)):
                self.problem(key, "is not a user name (letters, digits, '.', '_', '@', '-')")
            body = self.mapping(settings, key, ("token_sha256", "admin", "projects"))
            digest = str(body.get("token_sha256") or "").lower()
            if not _SHA256.match(digest):
                self.problem(f"{key}.token_sha256", "must be the hex SHA-256 of the API token")
            roles = body.get("projects") or {}
            if not isinstance(roles, dict):
                self.problem(f"{key}.projects", "must map project IDs to roles")
                roles = {}
            for project_id, role in roles.items():
                if project_id not in projects:
                    self.problem(f"{key}.projects.{project_id}", "is not a configured project")
                if role not in ROLES:
                    self.problem(
                        f"{key}.projects.{project_id}", f"{role!r} is not one of {', '.join(ROLES)}"
                    )
            users[str(name)] = User(
                name=str(name),
                token_sha256=digest,
                admin=self.boolean(body.get("admin"), f"{key}.admin", False),
                projects={str(k): str(v) for k, v in roles.items()},
            )
        return users

    def import_limits(self, value: Any) -> ImportLimits:
        raw = self.mapping(value, "import", ("max_unpacked", "max_ratio", "max_entries"))
        ratio = raw.get("max_ratio", 200.0)
        if isinstance(ratio, bool) or not isinstance(ratio, int | float) or ratio < 1:
            self.problem("import.max_ratio", f"{ratio!r} is not a ratio of 1 or more")
            ratio = 200.0
        entries = raw.get("max_entries", 500_000)
        if isinstance(entries, bool) or not isinstance(entries, int) or entries < 1:
            self.problem("import.max_entries", f"{entries!r} is not a positive count")
            entries = 500_000
        return ImportLimits(
            max_unpacked=self.size(raw.get("max_unpacked"), "import.max_unpacked", 64 * 2**30),
            max_ratio=float(ratio),
            max_entries=entries,
        )

    def count(self, value: Any, key: str, default: int) -> int:
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            self.problem(key, f"{value!r} is not a positive count")
            return default
        return value

    def associations(self, value: Any) -> Associations:
        raw = self.mapping(value, "associations", ("artim_timeout", "max_open", "max_per_peer"))
        artim = self.duration(raw.get("artim_timeout"), "associations.artim_timeout", 10.0)
        if not 0 < artim <= 600:
            self.problem("associations.artim_timeout", f"{artim:g}s is not within 0s and 10m")
            artim = 10.0
        max_open = self.count(raw.get("max_open"), "associations.max_open", 64)
        per_peer = self.count(raw.get("max_per_peer"), "associations.max_per_peer", 32)
        if per_peer > max_open:
            self.problem("associations.max_per_peer", f"{per_peer} is above associations.max_open")
        return Associations(artim_timeout=artim, max_open=max_open, max_per_peer=per_peer)

    def workers(self, value: Any) -> int:
        """Receiving processes: a number, or ``auto`` for one per core."""
        if value == "auto":
            return max(1, min(os.cpu_count() or 1, MAX_WORKERS))
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_WORKERS:
            self.problem("workers", f"{value!r} is not auto or a number from 1 to {MAX_WORKERS}")
            return 1
        return value

    def inbox(self, value: Any) -> Inbox:
        raw = self.mapping(value, "inbox", ("settle", "enabled"))
        return Inbox(
            settle=self.duration(raw.get("settle"), "inbox.settle", 10.0),
            enabled=self.boolean(raw.get("enabled"), "inbox.enabled", True),
        )

    def logging(self, value: Any) -> Logging:
        raw = self.mapping(value, "logging", ("format", "level"))
        log_format = self.string(raw.get("format"), "logging.format", "auto")
        if log_format not in ("auto", "json", "console"):
            self.problem("logging.format", f"{log_format!r} is not auto, json or console")
        level = (self.string(raw.get("level"), "logging.level", "info") or "info").lower()
        if level not in ("debug", "info", "warning", "error", "critical"):
            self.problem("logging.level", f"{level!r} is not debug, info, warning or error")
        return Logging(format=log_format or "auto", level=level)
