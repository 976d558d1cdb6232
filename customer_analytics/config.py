"""Settings read from the environment, and the month arithmetic every layer shares.

Every setting has a documented default so the embedded SQLite warehouse works with no
configuration at all (see the README's "Configuration" table).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import date, datetime, timezone

from sqlalchemy.engine import make_url

DEFAULT_DB_URL = "sqlite:///data/warehouse.db"
DEFAULT_DB_SCHEMA = "customer_analytics"
DEFAULT_LANDING_DIR = "data/landing"
# The sample generator's default start month as well: `generate-sample` then `materialize`
# fill every partition from the first one without further flags.
DEFAULT_START_MONTH = "2025-01"
DEFAULT_TIMEZONE = "UTC"
DEFAULT_LATE_DAYS = 3
DEFAULT_RERUN_POLL_SECONDS = 30
# A load that would replace a month (or the profiles) with fewer rows than this share of what they
# hold is refused unless the run allows it: an unmounted or half-copied landing folder looks like this.
DEFAULT_MAX_SHRINK = 0.5

_MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")
_IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class ConfigError(ValueError):
    """A setting or argument that is not valid; the message says what would be."""


def parse_month(text: str, *, what: str = "month") -> date:
    """`YYYY-MM` -> the first day of that month; anything else is refused with an example."""
    match = _MONTH_RE.match(str(text).strip())
    if not match or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) < 1900:
        raise ConfigError(f"{what} {text!r} is not a month: use YYYY-MM, e.g. 2025-01")
    return date(int(match.group(1)), int(match.group(2)), 1)


def month_key(month: date) -> str:
    """The partition key of a month: `YYYY-MM`."""
    return f"{month.year:04d}-{month.month:02d}"


def add_months(month: date, count: int) -> date:
    """The first day of the month `count` months after `month`'s month."""
    index = month.year * 12 + (month.month - 1) + count
    return date(index // 12, index % 12 + 1, 1)


def month_start(moment: date | datetime) -> date:
    return date(moment.year, moment.month, 1)


def current_month(now: datetime | None = None) -> date:
    """The month in progress, in UTC."""
    return month_start(now or datetime.now(timezone.utc))


def validate_identifier(name: str, *, what: str) -> str:
    """Schema and table names reach DDL, so only plain SQL identifiers are accepted."""
    if not _IDENTIFIER_RE.match(name or ""):
        raise ConfigError(
            f"{what} {name!r} is not a valid identifier: use letters, digits and underscores, "
            "starting with a letter or underscore (at most 63 characters)"
        )
    return name


def redact_url(url: str) -> str:
    """A database URL safe to print or log: the password is masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        # Unparsable URLs are echoed only up to the scheme: they may hold a password anywhere.
        return url.split(":", 1)[0] + "://…"


def parse_timezone(name: str, *, what: str = "CUSTOMER_ANALYTICS_TIMEZONE") -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{what} {name!r} is not a time zone: use an IANA name such as UTC or Europe/Berlin") from None
    return name


def _whole_number(text: str, *, what: str, unit: str, low: int, high: int) -> int:
    try:
        value = int(str(text).strip())
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise ConfigError(f"{what} {text!r} is not valid: use a whole number of {unit} from {low} to {high}")
    return value


def parse_start_month(text: str, *, what: str = "CUSTOMER_ANALYTICS_START_MONTH", now: datetime | None = None) -> date:
    """The first month partition: a month no later than the one in progress (else there would be no partitions)."""
    month = parse_month(text, what=what)
    latest = current_month(now)
    if month > latest:
        raise ConfigError(f"{what} {text!r} is after the month in progress ({month_key(latest)}): the first partition "
                          f"must be a month up to {month_key(latest)}, e.g. {DEFAULT_START_MONTH}")
    return month


def parse_late_days(text: str, *, what: str = "CUSTOMER_ANALYTICS_LATE_DAYS") -> int:
    return _whole_number(text, what=what, unit="days", low=0, high=28)


def parse_poll_seconds(text: str, *, what: str = "CUSTOMER_ANALYTICS_RERUN_POLL_SECONDS") -> int:
    return _whole_number(text, what=what, unit="seconds", low=1, high=3600)


def parse_max_shrink(text: str, *, what: str = "CUSTOMER_ANALYTICS_MAX_SHRINK") -> float:
    try:
        value = float(str(text).strip())
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{what} {text!r} is not valid: use the largest share of a month's rows a load may drop, "
                          f"from 0 to 1 (e.g. {DEFAULT_MAX_SHRINK}; 1 still refuses a load to zero rows)")
    return value


@dataclass(frozen=True)
class Settings:
    db_url: str
    db_schema: str
    landing_dir: str
    start_month: date
    timezone: str = DEFAULT_TIMEZONE
    late_days: int = DEFAULT_LATE_DAYS
    rerun_poll_seconds: int = DEFAULT_RERUN_POLL_SECONDS
    max_shrink: float = DEFAULT_MAX_SHRINK

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        return cls(
            db_url=env.get("CUSTOMER_ANALYTICS_DB_URL") or DEFAULT_DB_URL,
            db_schema=validate_identifier(
                env.get("CUSTOMER_ANALYTICS_DB_SCHEMA") or DEFAULT_DB_SCHEMA,
                what="CUSTOMER_ANALYTICS_DB_SCHEMA",
            ),
            landing_dir=env.get("CUSTOMER_ANALYTICS_LANDING_DIR") or DEFAULT_LANDING_DIR,
            start_month=parse_start_month(env.get("CUSTOMER_ANALYTICS_START_MONTH") or DEFAULT_START_MONTH),
            timezone=parse_timezone(env.get("CUSTOMER_ANALYTICS_TIMEZONE") or DEFAULT_TIMEZONE),
            late_days=parse_late_days(env.get("CUSTOMER_ANALYTICS_LATE_DAYS") or str(DEFAULT_LATE_DAYS)),
            rerun_poll_seconds=parse_poll_seconds(
                env.get("CUSTOMER_ANALYTICS_RERUN_POLL_SECONDS") or str(DEFAULT_RERUN_POLL_SECONDS)),
            max_shrink=parse_max_shrink(env.get("CUSTOMER_ANALYTICS_MAX_SHRINK") or str(DEFAULT_MAX_SHRINK)),
        )
