"""Retry a step whose database connection was lost; fail at once on every other error.

A connection dropped mid-step (a restarted server, `pg_terminate_backend`, a network blip)
rolls the step's transaction back, so running the whole step again is safe: every step
replaces whole partitions. Other errors (bad data, bad SQL, bad config) are not transient and
fail the step with their own message.
"""

import functools
import inspect

import dagster as dg
import psycopg
from sqlalchemy.exc import DBAPIError

MAX_RETRIES = 3
SECONDS_TO_WAIT = 5


def lost_connection(error: BaseException) -> bool:
    """Whether `error` is the database connection failing rather than the work."""
    if isinstance(error, DBAPIError):
        return bool(error.connection_invalidated) or isinstance(error.orig, psycopg.OperationalError)
    return isinstance(error, psycopg.OperationalError)  # raised as is by the background COPY thread


def _retry_if_lost(error: Exception) -> None:
    if lost_connection(error):
        raise dg.RetryRequested(max_retries=MAX_RETRIES, seconds_to_wait=SECONDS_TO_WAIT) from error


def retry_on_lost_connection(function):
    """Decorate an asset or op body (below the Dagster decorator) so a lost connection retries the step."""
    if inspect.isgeneratorfunction(function):
        @functools.wraps(function)
        def generator(*args, **kwargs):
            try:
                yield from function(*args, **kwargs)
            except Exception as error:
                _retry_if_lost(error)
                raise
        return generator

    @functools.wraps(function)
    def plain(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except Exception as error:
            _retry_if_lost(error)
            raise
    return plain
