"""What the production servers need before they start: their PostgreSQL databases and
S3 buckets. Also the one way URLs are shown to users (passwords masked)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from citeops.tasks.redact import redact_url
from citeops.tasks.s3 import s3_client, split_s3_uri
from citeops.tasks.stack.errors import StackError

if TYPE_CHECKING:
    from citeops.configs.settings import Settings


def is_postgres_url(url: str | None) -> bool:
    return bool(url) and url.split(":", 1)[0].split("+", 1)[0] in ("postgresql", "postgres")


def ensure_postgres_database(url: str, timeout: float = 10.0) -> bool:
    """Create the database named in a PostgreSQL SQLAlchemy URL when it does not exist
    (any driver: ``+psycopg``, ``+asyncpg``). The password, if not in the URL, comes from
    ``PGPASSWORD`` as libpq reads it. Returns True when it was created.

    Raises:
        StackError: the server cannot be reached, or the role may not create databases.
    """
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    name = parsed.database
    if not name:
        raise StackError(f"{redact_url(url)}: the URL names no database")
    params = {
        "host": parsed.host or "127.0.0.1",
        "port": parsed.port or 5432,
        "user": parsed.username,
        "password": parsed.password,
        "dbname": "postgres",
        "connect_timeout": int(timeout),
        "autocommit": True,
    }
    params = {key: value for key, value in params.items() if value is not None}
    where = f"{params['host']}:{params['port']}"
    try:
        with psycopg.connect(**params) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if exists.fetchone():
                return False
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            return True
    except psycopg.errors.InsufficientPrivilege:
        raise StackError(
            f"database {name!r} on {where} does not exist and this role may not create it; "
            f"ask the database admin to run: CREATE DATABASE {name}"
        ) from None
    except psycopg.OperationalError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else "no answer"
        raise StackError(
            f"PostgreSQL at {where} cannot be reached for database {name!r} ({first_line}); "
            "start it or fix the URL in the settings"
        ) from None


def require_bucket(settings: Settings, uri: str) -> None:
    """Check that the bucket of an ``s3://bucket/prefix`` URI exists and can be reached.

    Raises:
        StackError: the bucket is missing or the S3 API does not answer.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _ = split_s3_uri(uri)
    endpoint = settings.s3.endpoint_url or "AWS S3"
    try:
        s3_client(settings).head_bucket(Bucket=bucket)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code in ("404", "NoSuchBucket", "NotFound"):
            raise StackError(
                f"S3 bucket {bucket!r} (for {uri}) does not exist on {endpoint}; "
                f"create it first, e.g. `aws s3 mb s3://{bucket}`"
            ) from None
        raise StackError(f"S3 bucket {bucket!r} on {endpoint}: {code or error}") from None
    except BotoCoreError as error:
        raise StackError(
            f"S3 API {endpoint} cannot be reached for bucket {bucket!r}: {error}"
        ) from None


def prepare_resources(settings: Settings, mlflow: bool, prefect: bool) -> list[str]:
    """Create missing PostgreSQL databases and check S3 buckets for the servers about to
    start. Returns one note per database created."""
    notes: list[str] = []
    urls: list[str | None] = []
    if mlflow:
        urls.append(settings.mlflow.backend_store_uri)
    if prefect:
        urls.append(settings.stack.prefect_database_url)
    if mlflow or prefect:
        urls.append(settings.store_url)
    for url in dict.fromkeys(u for u in urls if is_postgres_url(u)):
        if ensure_postgres_database(url):
            notes.append(f"created PostgreSQL database for {redact_url(url)}")
    buckets: list[str] = []
    if mlflow and (settings.mlflow.artifacts_destination or "").startswith("s3://"):
        buckets.append(settings.mlflow.artifacts_destination)
    if settings.is_s3_log_root and (mlflow or prefect):
        buckets.append(settings.log_root)
    for uri in buckets:
        require_bucket(settings, uri)
    return notes
