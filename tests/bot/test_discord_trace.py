"""Discord's REST routes become bounded labels: no id, token or file name survives the template."""

from __future__ import annotations

import string

from hypothesis import given
from hypothesis import strategies as st

from app.bot.discord_trace import route_template


def test_ids_tokens_and_names_leave_the_route() -> None:
    assert route_template("/api/v10/channels/123456789012345678/messages") == "/channels/{id}/messages"
    assert route_template("/api/v10/channels/1/messages/2") == "/channels/{id}/messages/{id}"
    assert route_template("/api/v10/interactions/99/aW50ZXJhY3Rpb246OTk6dG9rZW4/callback") == (
        "/interactions/{id}/{token}/callback"
    )
    assert route_template("/api/v10/webhooks/7/abcdef-token_xyz/messages/@original") == (
        "/webhooks/{id}/{token}/messages/@original"
    )
    assert route_template("/attachments/1/2/secret-plans.py") == "/attachments/{id}/{id}/{param}"
    assert route_template("/attachments/1/2/plans") == "/attachments/{id}/{id}/{param}"
    assert route_template("/ephemeral-attachments/1/2/plans") == "/ephemeral-attachments/{id}/{id}/{param}"
    assert route_template("/api/v10/channels/1/messages/2/reactions/thumbsup/@me") == (
        "/channels/{id}/messages/{id}/reactions/{param}/@me"
    )
    assert route_template("/api/v10/users/@me") == "/users/@me"
    assert route_template("/api/v10/applications/5/guilds/6/commands") == "/applications/{id}/guilds/{id}/commands"


segment = st.text(alphabet=string.ascii_letters + string.digits + "-_.@%", min_size=1, max_size=40)


@given(st.lists(segment, min_size=1, max_size=8))
def test_a_template_keeps_only_fixed_lower_case_words(parts: list[str]) -> None:
    template = route_template("/api/v10/" + "/".join(parts))
    for word in template.strip("/").split("/"):
        assert word in {"{id}", "{token}", "{param}", "@me", "@original"} or (
            word.islower() and word.replace("-", "").replace("_", "").isalpha() and len(word) <= 32
        )
