"""A reasoning model's thoughts, kept out of its answer: a streaming filter over its text chunks.

Models such as DeepSeek-R1 or Qwen3 write their reasoning between `<think>` and `</think>` before (or amid) the
answer. The filter lets only the rest through, chunk by chunk, whatever way the tags are split across chunks:

- Text outside a think block streams on at once; only a possible start of `<think>` at a chunk's end ("<th")
  waits for the next chunk. A model that never thinks streams as before.
- A think block that is never closed makes the rest of the answer reasoning.
- Whitespace right after `</think>` is dropped (the answer starts at its first word), and so is whitespace
  before a think block that opens the answer. An answer whose visible text is only whitespace around
  reasoning is empty: the model only thought.

- A `</think>` before any `<think>`: the model's chat template opened the block itself (DeepSeek-R1's and Qwen3's
  thinking templates put `<think>` in the prompt), so everything before it was reasoning. What was shown of it is
  taken back (`retracted`: the chain tells the front end to replace the text shown so far).

Tags are matched as models write them, lowercase; a `<think>` inside a block is reasoning, the first `</think>`
closes it.
"""

from __future__ import annotations

OPEN_TAG = "<think>"
CLOSE_TAG = "</think>"


class ReasoningFilter:
    """Feed it an answer's chunks in order, then `finish`; what each call returns is the text to show."""

    __slots__ = ("_held", "_inside", "_trim", "_lead", "_shown", "reasoned", "reasoned_in_last", "retracted")

    def __init__(self) -> None:
        self._held = ""  # a possible partial tag at the end of the last chunk
        self._inside = False  # within a think block
        self._trim = False  # right after `</think>`: leading whitespace goes
        self._lead = ""  # whitespace before anything was shown: it waits to see whether a think block follows
        self._shown = False  # visible text went out
        self.reasoned = False  # the answer had reasoning
        self.reasoned_in_last = False  # the last chunk fed carried reasoning (or a tag)
        self.retracted = False  # the text shown so far was reasoning after all (a `</think>` came with no `<think>`)

    def feed(self, chunk: str) -> str:
        """The part of `chunk` (after what was held back) to show now."""
        if self._shown and not (self._held or self._inside or self._trim) and "<" not in chunk:
            self.reasoned_in_last = False
            return chunk  # the common case: plain text of a model that is not thinking
        text, self._held = self._held + chunk, ""
        self.reasoned_in_last = self._inside
        visible: list[str] = []
        while text:
            if self._inside:
                end = text.find(CLOSE_TAG)
                if end < 0:
                    self._held = text[len(text) - _partial_tag_at_end(text, CLOSE_TAG):]
                    break
                self._inside, self._trim = False, True
                text = text[end + len(CLOSE_TAG):]
                continue
            start = text.find(OPEN_TAG)
            stray = -1 if self.reasoned else text.find(CLOSE_TAG)
            if stray >= 0 and (start < 0 or stray < start):  # the template opened the block: all so far was thought
                self.retracted = self._shown
                visible.clear()
                self._shown, self._lead, self._trim = False, "", True
                self.reasoned = self.reasoned_in_last = True
                text = text[stray + len(CLOSE_TAG):]
                continue
            if start < 0:
                keep = _partial_tag_at_end(text, OPEN_TAG)
                if not self.reasoned:  # a `</think>` may still come and take back what is shown
                    keep = max(keep, _partial_tag_at_end(text, CLOSE_TAG))
                visible.append(self._visible(text[: len(text) - keep]))
                self._held = text[len(text) - keep:] if keep else ""
                break
            visible.append(self._visible(text[:start]))
            if not self._shown:
                self._lead = ""  # whitespace before the answer's first thought is not part of the answer
            self._inside = self.reasoned = self.reasoned_in_last = True
            text = text[start + len(OPEN_TAG):]
        return "".join(visible)

    def finish(self) -> str:
        """What is left to show once the answer ended: a partial tag that never completed is text (inside a think
        block, it is reasoning), and whitespace that waited is the answer only if the model did not think."""
        held, self._held = self._held, ""
        tail = "" if self._inside else self._visible(held)
        if not self._shown and self._lead and not self.reasoned:
            tail, self._lead = self._lead, ""
        return tail

    def _visible(self, text: str) -> str:
        if self._trim:
            text = text.lstrip()
            if not text:
                return ""
            self._trim = False
        if not self._shown:
            if not text or text.isspace():
                self._lead += text
                return ""
            text, self._lead, self._shown = self._lead + text, "", True
        return text


def _partial_tag_at_end(text: str, tag: str) -> int:
    """How many characters at the end of `text` could begin `tag` (never all of it: a whole tag was found)."""
    # The tag's only "<" is its first character: a partial tag at the end starts at the last "<".
    start = text.rfind("<", max(0, len(text) - len(tag) + 1))
    return len(text) - start if start >= 0 and tag.startswith(text[start:]) else 0
