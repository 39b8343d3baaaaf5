"""AppState: a few named values the application keeps across restarts and processes, one row each.

Not conversation data: what a front end must remember about its own set-up (the hash of the slash commands it
last synced to Discord). Writes are upserts, so processes sharing one database never collide on a name.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from app.storage.failures import unavailable_as_storage_error
from app.storage.models import app_state


class AppState:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    async def get(self, name: str) -> str | None:
        """The value kept under `name`, or None. A database that can't be used now is StorageUnavailable."""
        with unavailable_as_storage_error():
            async with self._engine.connect() as connection:
                return await connection.scalar(select(app_state.c.value).where(app_state.c.name == name))

    async def put(self, name: str, value: str) -> None:
        """Keep `value` under `name`, replacing what was there. A database that can't be used now is
        StorageUnavailable."""
        insert = self._insert(app_state).values(name=name, value=value)
        upsert = insert.on_conflict_do_update(
            index_elements=[app_state.c.name], set_={"value": value, "updated_at": func.current_timestamp()}
        )
        with unavailable_as_storage_error():
            async with self._engine.begin() as connection:
                await connection.execute(upsert)
