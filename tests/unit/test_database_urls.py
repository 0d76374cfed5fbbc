"""Which URL each kind of database connection uses (docs/pgbouncer.md)."""

from service.settings import Settings

POOLER = "postgresql://registrar@pgbouncer:6432/registrar"
DIRECT = "postgresql://registrar@db:5432/registrar"


def test_without_a_direct_url_everything_uses_the_database_url():
    settings = Settings(database_url=DIRECT)
    assert settings.database_session_url == DIRECT
    assert settings.database_behind_pooler is False


def test_a_direct_url_takes_listen_and_migrations_and_marks_the_pool_pooled(monkeypatch):
    monkeypatch.setenv("REGISTRAR_DATABASE_URL", POOLER)
    monkeypatch.setenv("REGISTRAR_DATABASE_DIRECT_URL", DIRECT)
    settings = Settings()
    assert settings.database_url == POOLER
    assert settings.database_session_url == DIRECT
    assert settings.database_behind_pooler is True
    assert DIRECT not in repr(settings)  # may carry a password
