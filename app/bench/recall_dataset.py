"""The recall benchmark's dataset: a long seeded conversation with planted facts, and questions about them.

`generate(seed)` writes the same conversation for the same seed, byte for byte (one `random.Random`, lists
only, no set or hash order anywhere). A conversation is 300+ turns over many days of varied small talk, with
facts planted in it of four kinds:

- stated: the user says it once, in a short message;
- corrected: the user says it, and weeks later says it changed (only the current value counts);
- assistant: the assistant says it (a recommendation, a suggestion) in answer to a request;
- in passing: one sentence inside a longer message about something else.

Beside them are look-alike distractors: another dog's name, a colleague's city, a friend's recommendation.
Every fact has two questions: literal (it shares the statement's key words) and paraphrased (other words for
the same thing). The small talk touches the same subjects (dogs, cities, books, food, work...) without naming
any planted value, so a keyword search meets competition and not only the planted message.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

DEFAULT_SEED = 11
DEFAULT_TURNS = 400
FIRST_DAY = datetime(2025, 1, 6, 8, 30, tzinfo=UTC)
FACT_KINDS = ("stated", "corrected", "assistant", "in passing")
QUESTION_KINDS = ("literal", "paraphrased")
MIN_CORRECTION_GAP = 40  # turns between a statement and its correction
QUESTION_ANSWER = "Let me think back over what we talked about."  # the scripted answer to every question


@dataclass(frozen=True, slots=True)
class Turn:
    user: str
    assistant: str
    at: datetime  # when the user wrote; the answer follows a few seconds later


@dataclass(frozen=True, slots=True)
class Fact:
    topic: str
    kind: str  # one of FACT_KINDS
    value: str  # the current value
    evidence: tuple[str, ...]  # the stored texts that carry the current value (a message, its answer)
    stale_value: str | None = None  # corrected facts: the value that no longer holds
    stale_evidence: tuple[str, ...] = ()
    distractor_value: str | None = None


@dataclass(frozen=True, slots=True)
class Question:
    text: str
    kind: str  # one of QUESTION_KINDS
    fact: Fact


@dataclass(frozen=True, slots=True)
class Dataset:
    seed: int
    turns: tuple[Turn, ...]
    facts: tuple[Fact, ...]
    questions: tuple[Question, ...]

    @property
    def answers(self) -> dict[str, str]:
        """The scripted assistant turn for each user text (user texts are unique), and for each question."""
        script = {turn.user: turn.assistant for turn in self.turns}
        script.update((question.text, QUESTION_ANSWER) for question in self.questions)
        return script

    def texts(self) -> list[str]:
        """Every stored text of the conversation, in order (what a reset erases)."""
        return [text for turn in self.turns for text in (turn.user, turn.assistant)]


# --- facts the user states --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UserFactTemplate:
    topic: str
    values: tuple[str, ...]
    statement: str  # "{v}" is the value
    correction: str
    in_passing: str  # one sentence, set inside a longer message
    acknowledgement: str  # the assistant's answer to the statement
    literal: str
    paraphrased: str
    distractor: str  # "{v}" is another value of the same kind, said about someone else


USER_FACTS = (
    UserFactTemplate(
        "dog", ("Rex", "Pepperoni", "Juniper", "Waffles", "Nimbus", "Ziggy", "Marmalade", "Bramble"),
        "By the way, my dog is named {v}.",
        "Small update on the dog: we renamed him, he answers to {v} now.",
        "I had to walk my dog {v} twice because he rolled in something awful",
        "{v} is a great name for a dog!",
        "What is my dog named?", "What's my pup called again?",
        "My neighbour's dog is named {v} and he barks at every bicycle.",
    ),  # fmt: skip
    UserFactTemplate(
        "city", ("Lisbon", "Tampere", "Ghent", "Valparaiso", "Krakow", "Hobart", "Leeds", "Osaka"),
        "I live in {v}, in case that matters for the weather talk.",
        "Big news: I moved last month, I live in {v} now.",
        "the tram here in {v}, where I live, was late again",
        "{v} sounds like a lovely place to live.",
        "Which city do I live in?", "Where is home for me these days?",
        "My colleague Dana lives in {v} and keeps sending me photos.",
    ),  # fmt: skip
    UserFactTemplate(
        "sister's birthday", ("14 June", "3 March", "27 October", "9 February", "21 August", "30 November"),
        "Note for later: my sister's birthday is on {v}.",
        "I got it wrong earlier, my sister's birthday is actually on {v}.",
        "I still need a gift because my sister's birthday is on {v}",
        "I'll keep {v} in mind for your sister.",
        "When is my sister's birthday?", "On what date does my sibling turn a year older?",
        "My cousin's birthday is on {v}, which always sneaks up on me.",
    ),  # fmt: skip
    UserFactTemplate(
        "job", ("radiographer", "sommelier", "cartographer", "locksmith", "actuary", "beekeeper", "luthier"),
        "For context, I work as a {v}.",
        "Career change: I quit, and now I work as a {v}.",
        "my shift as a {v}, which is my job, ran late",
        "Being a {v} sounds fascinating.",
        "What do I work as?", "What is my profession?",
        "My brother works as a {v} and loves it.",
    ),  # fmt: skip
    UserFactTemplate(
        "allergy", ("peanuts", "shellfish", "kiwi", "sesame", "celery", "mustard seeds"),
        "Heads up, I'm allergic to {v}.",
        "The doctor retested me: I'm not allergic to what I thought, I'm allergic to {v}.",
        "I had to check the menu twice since I'm allergic to {v}",
        "Good to know you're allergic to {v}, I'll remember.",
        "What am I allergic to?", "Which food could make me ill if I ate it?",
        "My roommate is allergic to {v}, so we never cook with it.",
    ),  # fmt: skip
    UserFactTemplate(
        "car", ("green Skoda Octavia", "red Fiat Panda", "silver Volvo V60", "blue Mazda Miata", "white Renault Zoe"),
        "I drive a {v}, nothing fancy.",
        "I sold the old car, I drive a {v} now.",
        "I parked the {v} I drive in the wrong spot",
        "A {v} is a solid car.",
        "What car do I drive?", "Which vehicle do I get around in?",
        "My friend Tom drives a {v} and won't stop talking about it.",
    ),  # fmt: skip
    UserFactTemplate(
        "partner", ("Amara", "Tobias", "Ines", "Kenji", "Rosalind", "Mateo"),
        "My partner's name is {v}, you'll hear about them a lot.",
        "Life update: we split up, and my new partner's name is {v}.",
        "my partner {v} made pancakes this morning",
        "Nice to hear about {v}!",
        "What is my partner's name?", "Who is my significant other?",
        "My best friend's partner is named {v}.",
    ),  # fmt: skip
    UserFactTemplate(
        "coffee", ("black with no sugar", "as an oat flat white", "with a splash of cold milk", "as a double espresso"),
        "I take my coffee {v}, every single morning.",
        "New habit: I take my coffee {v} these days.",
        "I made my coffee the way I take it, {v},",
        "Coffee {v}, noted!",
        "How do I take my coffee?", "How do I like my morning brew prepared?",
        "My boss takes her coffee {v}, which I find odd.",
    ),  # fmt: skip
    UserFactTemplate(
        "language", ("Finnish", "Portuguese", "Korean", "Welsh", "Hungarian", "Swahili"),
        "I'm learning {v} in the evenings.",
        "I gave up on that one, I'm learning {v} instead now.",
        "I practised the {v} I'm learning on the bus",
        "Learning {v} is a great project.",
        "Which language am I learning?", "What foreign tongue am I studying?",
        "My flatmate is learning {v} for her job.",
    ),  # fmt: skip
    UserFactTemplate(
        "sport", ("badminton", "water polo", "bouldering", "table tennis", "ultimate frisbee", "fencing"),
        "I play {v} every Tuesday night.",
        "I switched clubs: on Tuesdays I play {v} now.",
        "my knee is sore from {v}, which I play on Tuesdays,",
        "{v} on Tuesdays, nice way to stay fit.",
        "What sport do I play on Tuesdays?", "How do I keep active at the start of the week?",
        "My uncle plays {v} on weekends.",
    ),  # fmt: skip
    UserFactTemplate(
        "plant", ("a fiddle-leaf fig", "a monstera", "a bonsai juniper", "a snake plant", "an orchid"),
        "The only plant I own is {v}.",
        "The old plant died, so the only plant I own now is {v}.",
        "I watered the one plant I own, {v},",
        "Plants like {v} brighten a room.",
        "What plant do I own?", "Which bit of greenery lives in my flat?",
        "My mum owns {v} that is older than me.",
    ),  # fmt: skip
    UserFactTemplate(
        "band", ("Khruangbin", "The Cranberries", "Fleetwood Mac", "Radiohead", "Tame Impala", "Portishead"),
        "My favourite band is {v}.",
        "Honestly my taste changed, my favourite band is {v} now.",
        "I put on {v}, my favourite band, while cleaning",
        "{v} is a great band to have as a favourite.",
        "What is my favourite band?", "Which musicians do I love listening to most?",
        "My coworker's favourite band is {v}.",
    ),  # fmt: skip
)


# --- facts the assistant states ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AssistantFactTemplate:
    topic: str
    values: tuple[str, ...]
    request: str  # the user's message that asks for it
    answer: str  # the assistant's, carrying "{v}"
    literal: str
    paraphrased: str
    distractor: str


ASSISTANT_FACTS = (
    AssistantFactTemplate(
        "book", ("The Overstory", "Piranesi", "A Gentleman in Moscow", "The Remains of the Day", "Stoner"),
        "Can you recommend a book for my trip?",
        "I'd recommend the book {v}: it's absorbing without being heavy, perfect for travelling.",
        "What book did you recommend to me?", "Which novel was it you suggested I read?",
        "My friend recommended the book {v}, but I couldn't get into it.",
    ),  # fmt: skip
    AssistantFactTemplate(
        "dinner", ("shakshuka", "mushroom risotto", "lentil dal", "miso-glazed salmon", "pad kra pao"),
        "What should I cook tonight? I'm out of ideas.",
        "How about you cook {v} tonight? It's quick and uses what most kitchens have.",
        "What did you suggest I cook?", "What was that dinner idea you gave me?",
        "My dad always cooks {v} on Sundays.",
    ),  # fmt: skip
    AssistantFactTemplate(
        "project name", ("Lanternfish", "Quillwork", "Driftwood", "Saltmarsh", "Copperleaf"),
        "Help me name my new side project, a little budgeting app.",
        "Name your side project {v}: short, memorable, and the domain is probably free.",
        "What name did you suggest for my side project?", "What did you come up with to call my little app?",
        "A startup near me is called {v}.",
    ),  # fmt: skip
    AssistantFactTemplate(
        "film", ("Paterson", "Columbus", "The Station Agent", "Frances Ha", "After Yang"),
        "Any film you think I'd enjoy this weekend?",
        "I think you'd enjoy the film {v}: quiet, warm and beautifully shot.",
        "Which film did you recommend?", "What movie did you tell me to watch?",
        "My sister keeps telling me to see the film {v}.",
    ),  # fmt: skip
    AssistantFactTemplate(
        "stretch", ("cat-cow stretch", "pigeon pose", "doorway chest stretch", "seated spinal twist"),
        "My back hurts from sitting all day, any quick exercise?",
        "Try the {v} for two minutes every hour; it loosens the lower back.",
        "What exercise did you suggest for my back?", "What did you tell me to do about my aching spine?",
        "The physio at work swears by the {v}.",
    ),  # fmt: skip
)


# --- small talk --------------------------------------------------------------------------------------------

OPENERS = (
    "Morning!", "Hey again.", "Okay, random thought:", "So,", "Quick one:", "Ugh, long day.", "Evening!",
    "Guess what.", "Hi hi.", "Back again.", "Right, so", "Not much going on, but", "Hmm.", "Well,",
)  # fmt: skip
SUBJECTS = (
    "the weather turned {mood} again and I {activity}",
    "I tried a new {food} place near the station and it was {mood}",
    "work was {mood} today, lots of meetings about {work_thing}",
    "I watched a documentary about {nature} last night",
    "the neighbours are renovating and it's {mood}",
    "I finally cleaned the {room} after putting it off for weeks",
    "I saw someone walking a huge dog in the park, it looked {mood}",
    "a friend sent me a playlist that was honestly {mood}",
    "I read a few pages of a book about {nature} before bed",
    "the city traffic was {mood} on the way home",
    "I'm thinking about planning a trip somewhere with {nature}",
    "my phone battery died right when I {activity}",
    "I made {food} for lunch and it turned out {mood}",
    "there was a power cut in the building while I {activity}",
    "I started a puzzle with a thousand pieces of {nature}",
    "the bakery downstairs had {food} on sale",
    "I spent an hour reorganising the {room} shelves",
    "the gym was {mood}, barely anyone there",
    "my laptop updated itself in the middle of {work_thing}",
    "I've been sleeping badly, the {room} gets too warm",
    "I signed up for a pottery class, it looks {mood}",
    "I overheard a funny conversation about {work_thing} on the train",
    "a package arrived that I don't remember ordering",
    "I tried meditating for ten minutes and it felt {mood}",
    "someone at work brought {food} for everyone",
    "I'm binge-watching a series set near {nature}",
)  # fmt: skip
MOODS = ("gloomy", "lovely", "chaotic", "weirdly calm", "exhausting", "great", "meh", "surprisingly fun", "noisy")
ACTIVITIES = (
    "stayed in", "went for a run", "was on a call", "was cooking", "was halfway through an email",
    "was reading", "went shopping", "was fixing the bike",
)  # fmt: skip
FOODS = ("ramen", "pho", "dumplings", "tacos", "falafel", "pancakes", "curry", "soup", "pizza", "salad")
NATURE = ("glaciers", "octopuses", "deserts", "volcanoes", "coral reefs", "owls", "rainforests", "mountains")
WORK_THINGS = ("the quarterly plan", "budgets", "the new office", "a migration", "hiring", "deadlines")
ROOMS = ("kitchen", "bedroom", "hallway", "balcony", "bathroom", "living room")
FOLLOW_UPS = (
    "", "", " What do you think?", " Is that normal?", " Anyway.", " Any tips?", " How's your day going?",
    " Just wanted to share.", " Not sure why I'm telling you this.", " Thoughts?",
)  # fmt: skip
REPLIES = (
    "That sounds {mood}! Thanks for telling me.",
    "Oh, I love hearing about your day. Tell me more whenever you like.",
    "Honestly that happens to everyone now and then. Hang in there!",
    "Ha, that made me smile. What happened next?",
    "That's a good way to spend the time, I think.",
    "Sounds like a {mood} moment. Did it change your plans?",
    "I'd take a short break and a glass of water after that.",
    "Fair enough! Small things like that add up.",
    "Noted! I hope the rest of the day treats you well.",
    "That's interesting, I didn't expect that turn.",
)  # fmt: skip
LINKS = ("Also,", "Oh and", "Plus", "Then", "Later", "Meanwhile")
LONG_MESSAGE_PARTS = (
    "Long story, so bear with me.", "Today was a whole saga.", "Let me tell you about my weekend.",
    "Okay so, catching you up.",
)  # fmt: skip


def generate(seed: int = DEFAULT_SEED, turns: int = DEFAULT_TURNS) -> Dataset:
    """The seeded conversation of `turns` turns (at least 300 by default) with every template planted once."""
    rng = random.Random(seed)
    user_templates = list(USER_FACTS)
    rng.shuffle(user_templates)
    # The user's facts take the three user kinds in turn; every kind has facts, whatever the seed.
    user_kinds = [("stated", "corrected", "in passing")[i % 3] for i in range(len(user_templates))]
    used_values: list[str] = []

    def pick(values: tuple[str, ...]) -> str:
        choice = rng.choice([v for v in values if v not in used_values])
        used_values.append(choice)
        return choice

    planted: dict[int, tuple[str, str]] = {}
    facts: list[Fact] = []
    free = list(range(2, turns - 2))
    rng.shuffle(free)

    def take_turn(lowest: int = 0, highest: int | None = None) -> int:
        for index in free:
            if lowest <= index and (highest is None or index <= highest):
                free.remove(index)
                return index
        raise ValueError("the conversation is too short for its planted facts")

    # The facts' evidence is spread evenly: the conversation is cut into one stretch per fact, and each fact's
    # evidence lies in its own stretch (a corrected fact's in one late enough for the stale statement before it).
    kinds = [*user_kinds, *(["assistant"] * len(ASSISTANT_FACTS))]
    stretch = (turns - 4) / len(kinds)
    stretches = list(range(len(kinds)))
    rng.shuffle(stretches)
    home: dict[int, int] = {}
    for number in sorted(range(len(kinds)), key=lambda n: kinds[n] != "corrected"):  # corrected ones first
        lowest = MIN_CORRECTION_GAP + 2 if kinds[number] == "corrected" else 0
        chosen = next(s for s in stretches if 2 + s * stretch >= lowest)
        stretches.remove(chosen)
        home[number] = chosen

    def evidence_turn(number: int) -> int:
        start = 2 + home[number] * stretch
        return take_turn(round(start), round(start + stretch) - 1)

    for number, (template, kind) in enumerate(zip(user_templates, user_kinds, strict=True)):
        value, distractor = pick(template.values), pick(template.values)
        if kind == "stated":
            user, answer = template.statement.format(v=value), template.acknowledgement.format(v=value)
            planted[evidence_turn(number)] = (user, answer)
            facts.append(Fact(template.topic, kind, value, (user, answer), distractor_value=distractor))
        elif kind == "corrected":
            stale = pick(template.values)
            old_user, old_answer = template.statement.format(v=stale), template.acknowledgement.format(v=stale)
            new_user, new_answer = template.correction.format(v=value), template.acknowledgement.format(v=value)
            correction = evidence_turn(number)
            planted[correction] = (new_user, new_answer)
            planted[take_turn(highest=correction - MIN_CORRECTION_GAP)] = (old_user, old_answer)
            facts.append(
                Fact(template.topic, kind, value, (new_user, new_answer), stale, (old_user, old_answer), distractor)
            )
        else:
            user = _long_message(rng, template.in_passing.format(v=value))
            answer = _reply(rng)
            planted[evidence_turn(number)] = (user, answer)
            facts.append(Fact(template.topic, kind, value, (user,), distractor_value=distractor))
        planted[take_turn()] = (template.distractor.format(v=distractor), _reply(rng))

    for number, template in enumerate(ASSISTANT_FACTS, start=len(user_templates)):
        value, distractor = pick(template.values), pick(template.values)
        answer = template.answer.format(v=value)
        planted[evidence_turn(number)] = (template.request, answer)
        facts.append(Fact(template.topic, "assistant", value, (answer,), distractor_value=distractor))
        planted[take_turn()] = (template.distractor.format(v=distractor), _reply(rng))

    conversation: list[Turn] = []
    seen: list[str] = []  # user texts must be unique: the scripted engine answers by the user's text
    at = FIRST_DAY
    for index in range(turns):
        at = _next_time(rng, at)
        if index in planted:
            user, answer = planted[index]
        else:
            user, answer = _small_talk(rng), _reply(rng)
            while user in seen:
                user = _small_talk(rng)
        seen.append(user)
        conversation.append(Turn(user, answer, at))

    questions = [
        Question(text, question_kind, fact)
        for fact, template in zip(facts, [*user_templates, *ASSISTANT_FACTS], strict=True)
        for question_kind, text in (("literal", template.literal), ("paraphrased", template.paraphrased))
    ]
    return Dataset(seed, tuple(conversation), tuple(facts), tuple(questions))


def _next_time(rng: random.Random, at: datetime) -> datetime:
    """A few minutes to the next message; now and then the next day or a few days later."""
    roll = rng.random()
    if roll < 0.1:
        days = rng.choice((1, 1, 1, 2, 3))
        return (at + timedelta(days=days)).replace(hour=rng.randint(7, 21), minute=rng.randint(0, 59))
    return at + timedelta(minutes=rng.randint(1, 25), seconds=rng.randint(0, 59))


def _fill(rng: random.Random, template: str) -> str:
    return template.format(
        mood=rng.choice(MOODS),
        activity=rng.choice(ACTIVITIES),
        food=rng.choice(FOODS),
        nature=rng.choice(NATURE),
        work_thing=rng.choice(WORK_THINGS),
        room=rng.choice(ROOMS),
    )


def _small_talk(rng: random.Random) -> str:
    """An opener, one to three things that happened, maybe a question back."""
    opener = rng.choice(OPENERS)
    happenings = [_fill(rng, subject) for subject in rng.sample(SUBJECTS, rng.choice((1, 2, 2, 3)))]
    if opener.endswith((".", "!")):
        happenings[0] = happenings[0][0].upper() + happenings[0][1:]
    joined = happenings[0] + "".join(f". {LINKS[rng.randrange(len(LINKS))]} {h}" for h in happenings[1:])
    return f"{opener} {joined}.{rng.choice(FOLLOW_UPS)}"


def small_talk_line(rng: random.Random) -> str:
    """One message of small talk (what bulk-seeded history is made of)."""
    return _small_talk(rng) if rng.random() < 0.5 else _reply(rng)


def _reply(rng: random.Random) -> str:
    return " ".join(_fill(rng, reply) for reply in rng.sample(REPLIES, rng.choice((1, 2, 2))))


def _long_message(rng: random.Random, sentence: str) -> str:
    """A long message about the day with `sentence` in its middle."""
    before = [_fill(rng, subject) for subject in rng.sample(SUBJECTS, 2)]
    after = [_fill(rng, subject) for subject in rng.sample(SUBJECTS, 2)]
    parts = [rng.choice(LONG_MESSAGE_PARTS), f"First {before[0]}.", f"Then {before[1]}, and {sentence}."]
    parts += [f"After that {after[0]}.", f"And to top it off, {after[1]}."]
    return " ".join(parts)

