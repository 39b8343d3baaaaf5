"""A member's use today: read once, kept up to date by this process's charges, started again at 00:00 UTC."""

from __future__ import annotations

from datetime import UTC, date, datetime

from app.conversation.usage import UsageLedger
from app.storage import ConversationKey, StoredMessage, UsageStore
from tests.helpers import history_store


class Now:
    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment


async def test_use_today_counts_this_processs_charges_and_resets_at_midnight_utc(migrated_url: str) -> None:
    store = history_store(migrated_url)
    now = Now(datetime(2026, 12, 1, 23, 59, tzinfo=UTC))
    ledger = UsageLedger(UsageStore(store.database), now=now)
    try:
        conversation = await store.conversation_id(ConversationKey(1, "guild:7"))
        for tokens in (100, 40):
            turn = (await store.start_turn(conversation, StoredMessage("user", "q", 1), 100)).turn_id
            charge = ledger.charge(7, 1, tokens)
            await store.finish_turn(conversation, StoredMessage("assistant", "a", 1, "brain"), turn, charge=charge)
            assert charge.day == date(2026, 12, 1)
        assert await ledger.used_today(7, 1) == 140  # read from the database
        ledger.charge(7, 1, 10)  # counted at once, before its answer is written
        assert await ledger.used_today(7, 1) == 150
        assert await ledger.used_today(8, 1) == 0
        assert ledger.resets_at() == datetime(2026, 12, 2, tzinfo=UTC)
        assert await ledger.today_total() == 140

        now.moment = datetime(2026, 12, 2, 0, 0, 1, tzinfo=UTC)
        assert await ledger.used_today(7, 1) == 0
        assert await ledger.today_total() == 0
        assert [total.tokens for total in await ledger.totals(days=2)] == [140]
    finally:
        await store.close()
