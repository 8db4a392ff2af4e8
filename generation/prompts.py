"""Style presets and the identity-budget prompt linter.

Likeness is a budget: every word that shrinks, hides, multiplies or redescribes the face spends
some of it (identity-generation.md: identity degrades as the face gets smaller). The linter finds
such wording, removes or replaces what would cost likeness, warns about the rest, and lists every
change it made, so a person always sees how their prompt was rewritten.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from generation.styles import DEFAULT_STYLE, FRAMINGS, STYLES, StylePreset, get_style

NSFW_POLICIES = ("block", "warn", "allow")


# The only tuned numbers outside the style table.
SCALE_LIMITS = (0.0, 1.5)
NON_PHOTO_WORDS_BOOST = 0.10  # identity weight added when the prompt asks a photo style for a drawn look
_AUTO_FARTHEST = "half-body"  # the linter never picks a framing farther than this by itself
_SPECIAL_TOKENS = 2  # CLIP's start and end tokens count towards its 77
_PORTRAIT_LENS = "85mm portrait lens"
_NSFW_NEGATIVE = "nsfw, nudity"


@dataclass(frozen=True)
class PromptWarning:
    """One thing the user should know; code is stable for the bot, message is shown as is."""

    code: str
    message: str


@dataclass(frozen=True)
class LintResult:
    """The adjusted prompt and suggested settings, with every change spelled out for the user."""

    original: str
    prompt: str  # final positive prompt, style template applied
    negative_prompt: str
    framing: str
    identity_scale: float
    controlnet_scale: float
    guidance_scale: float
    style: str
    user_prompt: str  # the adjusted user part, before the template
    warnings: tuple[PromptWarning, ...] = ()
    changes: tuple[str, ...] = ()
    truncated: bool = False


class UnknownFramingError(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f'Unknown framing "{name}". Choose one of: {", ".join(FRAMINGS)}.')


class PromptRejectedError(ValueError):
    """The prompt asks for something the bot does not make; the message is safe to show the user."""

    def __init__(self, phrases: tuple[str, ...]) -> None:
        self.phrases = phrases
        super().__init__("I don't make nude or sexual images, so I can't use this prompt "
                         f"({_quoted(phrases)}). Please describe a different picture.")


def approximate_token_count(text: str) -> int:
    """Words and punctuation marks plus CLIP's start/end tokens.

    CLIP's BPE splits rare words into several tokens, so this undercounts them; the engine passes
    the real tokenizer, and this is only the fallback.
    """
    return len(re.findall(r"\w+|[^\w\s]", text)) + _SPECIAL_TOKENS


# --- patterns ------------------------------------------------------------------------------------
# Fragments are regexes where " " means "spaces or hyphens" and "~" means "optional space or hyphen",
# so "full~body" matches "full body", "full-body" and "fullbody". Whole words only, and a hyphenated
# compound is its own word: "unmasked" and "mask-like" never match "mask", "young-looking" is not
# "young", and "grouped" / "crowded" (a busy place, still one subject) are left alone.


def _rx(*fragments: str) -> re.Pattern[str]:
    body = "|".join(f.replace(" ", r"[\s-]+").replace("~", r"[\s-]*") for f in fragments)
    return re.compile(rf"(?<!\w)(?:{body})(?![\w-])", re.IGNORECASE)


_ART = r"(?:an? |the )?"
_PERSON_NOUN = r"(?:man|men|woman|women|girls?|boys?|lady|ladies|guys?|persons?|people|gentlem[ae]n|kids?|child)"
_NAME = r"(?-i:[A-Z][\w'’.]*)(?: (?-i:[A-Z][\w'’.]*)){0,3}"  # capitalised words: "Brad Pitt"
_SOMEONE = (r"(?:(?:an? |the )?(?:famous |popular |young |younger |real )*(?:celebrit(?:y|ies)|actor|actress|singer|"
            r"pop star|movie star|film star|model|athlete|footballer|rapper|influencer|politician|president)"
            r"|someone else|somebody else|another person|(?:my|his|her|their) (?:\w+))")

_LOOKALIKE = _rx(
    rf"(?:who |that )?(?:looks?|looking) (?:exactly |just |a bit |a lot |kind of )?like "
    rf"(?:(?:an? |the )?(?:young |younger |old |older )?{_NAME}|{_SOMEONE})",
    rf"(?:who |that )?resembl(?:e|es|ing) (?:(?:an? |the )?(?:young |younger |old |older )?{_NAME}|{_SOMEONE})",
    rf"{_ART}(?:(?:{_NAME}|celebrity|famous person|famous|star) )?look~alikes?",
    rf"{_ART}doppelg(?:a|ä)ngers?(?: of {_NAME})?",
    rf"(?:with )?the face of (?:{_NAME}|{_SOMEONE})",
)
_LENS_LEAD = rf"(?:(?:shot |taken |photographed )?(?:through|with|using|on) )?{_ART}"
_WIDE_LENS = _rx(
    rf"{_LENS_LEAD}fish~eye(?: lens)?(?: (?:shot|photo|view|effect|distortion))?",
    rf"{_LENS_LEAD}(?:ultra|super)~wide(?:~angle)?(?: (?:lens|shot|photo|view))?",
    rf"{_LENS_LEAD}wide~angle(?: (?:lens|shot|photo|view))?",
    rf"{_LENS_LEAD}(?:8|10|11|12|14|15|16|17|18|20|21|24)~mm(?: lens)?",
)
_DISTANT = _rx(
    rf"(?:in )?{_ART}(?:full|whole|entire)~(?:body|length)(?: (?:shot|photo|photograph|portrait|picture|image|view|"
    r"pose|framing))?(?: of)?",
    r"(?:from )?head~to~toe",
    rf"(?:in )?{_ART}(?:extreme |very )?(?:wide|long|establishing|distant) shots?(?: of)?",
    r"(?:(?:seen|viewed|photographed|shot) )?(?:from afar|from a distance|at a distance|in the distance|"
    r"(?:from )?far away|far off)",
    rf"{_ART}landscape (?:shot|photo|photograph|photography|view|picture)s?(?: of)?",
    rf"{_ART}(?:tiny|small|little|distant) (?:figures?|persons?|silhouettes?)",
    rf"(?:from )?{_ART}(?:aerial|drone|overhead|top~down|bird(?:['’]?s)?~eye) "
    r"(?:view|shot|photo|photograph|photography|perspective)s?(?: of)?",
)
_SEVERAL_PEOPLE = _rx(
    rf"(?:(?:in|among|with|and|near|before|facing) )?{_ART}(?:big |huge |large |cheering )?crowds?(?: of \w+)?",
    rf"(?:(?:with|and|in) )?{_ART}(?:big |large |small )?groups? of \w+",
    rf"{_ART}group (?:photo|shot|selfie|picture|portrait)s?",
    r"(?:(?:with|and|among) )?(?:(?:my|his|her|their|some|a few|several|best|close) )*friends",
    rf"(?:(?:as|with|and|in) )?{_ART}(?:(?:young|old|happy|married|loving|romantic|elderly) )?couples?(?! of)",
    r"(?:(?:with|and) )?(?:(?:my|his|her|their|the|whole) )*family(?: (?:photo|portrait|picture|photograph)s?)?",
    r"(?:(?:with|and|among) )?(?:two|three|four|five|six|several|many|multiple|[2-9]) (?:people|persons|men|women|"
    r"girls|boys|friends|kids|children|faces|guys)",
    rf"{_ART}team (?:photo|picture|portrait)s?",
    r"surrounded by (?:people|fans|friends|\w+ people)",
)
_SILHOUETTE = _rx(
    rf"(?:(?:as|in) )?{_ART}silhouett(?:e|es|ed)",
    r"strongly back~lit|back~lit|back~light(?:s|ing)?|contre~jour",
    r"rim~light(?:ing)? only",
    r"(?:with )?(?:the |(?:his|her|their) )?face (?:hidden )?in (?:deep |dark |heavy )?(?:shadows?|darkness)",
    r"(?:hidden )?in (?:deep |dark |heavy )?shadows?",
    rf"{_ART}(?:dark|darkened|shadowed|obscured) faces?",
    r"(?:facing |looking )?(?:away from the camera|against the sun)",
)
_FACE_COVER = _rx(
    rf"(?:(?:with|wearing) )?{_ART}(?:heavy|thick|dramatic|clown|goth|gothic|drag|halloween|zombie|kabuki|sfx|"
    r"special effects) make~up",
    rf"(?:(?:with|wearing) )?{_ART}(?:clown|face~paint(?:ed|ing)?|war paint|body paint(?:ed|ing)?)",
    r"painted face",
    rf"(?:(?:with|wearing) )?{_ART}(?:(?:face|ski|gas|halloween|venetian|carnival|surgical|medical|hockey|"
    r"superhero|masquerade) )?mask(?:s|ed)?",
    rf"(?:(?:with|wearing) )?{_ART}face tattoos?",
    rf"(?:(?:with|using) )?{_ART}(?:heavy |strong )?"
    r"(?:instagram|snapchat|tiktok|beauty|face|skin~smoothing|heavy|strong) filters?",
    r"glitch(?:ed|y|es)?(?: (?:art|effect))?",
    r"pixel(?:at|iz|is)ed",
)
# Drawn looks named in the prompt, and the preset made for each.
_NON_PHOTO = (
    (_rx(r"anime", r"manga", r"chibi"), "anime"),
    (_rx(r"cartoon(?:s|y|ish)?", r"pixar(?:~style)?", r"disney(?:~style)?", r"dreamworks", r"3d render(?:ed|ing)?",
         r"3d animat(?:ed|ion)", r"lego", r"caricatures?"), "cartoon"),
    (_rx(r"watercolou?rs?"), "watercolor"),
)
_COLOUR = r"(?:black|brown|red|blonde?|grey|gray|white|silver|auburn|dark|light|golden|platinum|pink|purple|blue|green)"
_DESCRIPTORS = _rx(
    r"(?:blue|green|brown|hazel|grey|gray|amber|violet|dark|light|black) ey(?:es|ed|e)",
    rf"{_COLOUR} hair(?:ed)?",
    r"blonde?s?|brunettes?|redhead(?:ed|s)?",
    r"young(?:er)?|youthful|elderly|middle~aged|teen(?:age|ager|agers|s)?",
    rf"old(?:er)? {_PERSON_NOUN}",
    r"\d{1,3}~(?:years?|yrs?) old|\d{1,3}~(?:year|yr)~old",
    r"in (?:his|her|their) (?:teens|twenties|thirties|forties|fifties|sixties|seventies|eighties|[1-9]0s)",
    r"caucasian|hispanic|latin[ao]|latinx|mixed~race",
    rf"(?:asian|east asian|south asian|african|african~american|black|white|indian|arab|european|middle eastern|"
    rf"native american) (?:{_PERSON_NOUN}|features|face)",
    r"(?:pale|fair|dark|tan|tanned|olive|light|brown|black|white|porcelain)~skin(?:ned)?",
    rf"{_ART}(?:different|another|new|other) face",
)
_NSFW = _rx(
    r"nsfw|nudes?|nudity|naked|topless|bottomless|undressed|unclothed|lewd|xxx|hentai",
    r"porn(?:o|ographic|ography)?|erotic(?:a)?|sexual(?:ly explicit)?|explicit",
)


@dataclass(frozen=True)
class _Removal:
    code: str
    reason: str  # short, for the change list
    pattern: re.Pattern[str]
    message: str  # user-facing; "{phrases}" is filled in
    replacement: str = ""


_REMOVALS = (
    _Removal("lookalike", "asks to look like someone else", _LOOKALIKE,
             "The likeness comes from your photo, so I removed {phrases}: asking to look like someone else "
             "fights it."),
    _Removal("wide_lens", "wide lenses stretch faces", _WIDE_LENS,
             "Fisheye and ultra-wide lenses stretch faces, which costs likeness. I replaced {phrases} with an "
             f"{_PORTRAIT_LENS}.", replacement=_PORTRAIT_LENS),
    _Removal("distant_framing", "distant framing", _DISTANT, ""),  # message depends on the framing
    _Removal("several_people", "several people", _SEVERAL_PEOPLE,
             "I can keep only one face looking like you, so I removed {phrases}. Ask for a portrait of just you."),
    _Removal("silhouette", "hides the face in shadow", _SILHOUETTE,
             "Backlight and shadow hide the features the likeness is built from, so I removed {phrases}."),
    _Removal("face_cover", "covers or distorts the face", _FACE_COVER,
             "Masks, heavy makeup, face paint and strong filters cover the features the likeness depends on, "
             "so I removed {phrases}."),
)


def stricter_policy(*policies: str | None) -> str:
    """The strictest of the given content policies (block > warn > allow); unset ones are skipped."""
    known = [p for p in policies if p in NSFW_POLICIES]
    return min(known, key=NSFW_POLICIES.index) if known else "block"


def lint_prompt(
    prompt: str,
    *,
    style: str = DEFAULT_STYLE,
    framing: str | None = None,
    nsfw_policy: str = "block",
    max_tokens: int = 77,
    count_tokens: Callable[[str], int] | None = None,
) -> LintResult:
    """Check a prompt against the identity budget and return the adjusted prompt and settings.

    Raises UnknownStyleError / UnknownFramingError for bad choices and PromptRejectedError when
    nsfw_policy is "block" and the prompt asks for nudity or sexual content.
    """
    preset = get_style(style)
    if framing is not None and framing not in FRAMINGS:
        raise UnknownFramingError(framing)
    if nsfw_policy not in NSFW_POLICIES:
        raise ValueError(f'Unknown nsfw_policy "{nsfw_policy}". Choose one of: {", ".join(NSFW_POLICIES)}.')
    if max_tokens <= _SPECIAL_TOKENS:
        raise ValueError(f"max_tokens must be more than {_SPECIAL_TOKENS}, got {max_tokens}")

    notes = _Notes()
    text, negative = _check_nsfw(_squash(prompt), preset.negative_prompt, nsfw_policy, notes)

    chosen_framing = framing or preset.framing
    removed = _apply_removals(text)
    for rule, phrases in removed.found.items():
        message = rule.message
        if rule.code == "distant_framing":
            message, chosen_framing = _distant_advice(framing, preset.framing, notes.changes)
        notes.warn(rule.code, message.format(phrases=_quoted(phrases)))
        if rule.replacement:
            notes.changes.append(f'replaced "{phrases[0]}" with "{rule.replacement}" ({rule.reason})')
            phrases = phrases[1:]
        notes.changes.extend(f'removed "{p}" ({rule.reason})' for p in phrases)
    text = removed.text

    if framing == "full-body":
        notes.warn("full_body_framing",
                   "Full-body framing makes your face small, and small faces lose likeness. I'll re-render the face "
                   "at a higher resolution afterwards, which brings much of it back, but closer framings look more "
                   "like you.")
    identity = _check_non_photo(text, preset, notes)
    descriptors = _find(_DESCRIPTORS, text)
    if descriptors:
        notes.warn("face_descriptor",
                   f"Your photo decides your face. Words like {_quoted(descriptors)} fight it and can cost likeness; "
                   "I kept them, but remove them if the result doesn't look like you.")

    if not text:
        text = preset.default_subject
        reason = "was empty after the removals" if prompt.strip() else "was empty"
        notes.changes.append(f'the prompt {reason}, so I used the style\'s default subject: "{text}"')
    text, cut = _fit(text, preset, max_tokens, count_tokens or approximate_token_count)
    if cut:
        notes.warn("too_long", f"Your prompt is longer than the model can read ({max_tokens} tokens including the "
                               f'style), so I cut the end: "{cut}".')
        notes.changes.append(f'cut "{cut}" to fit the {max_tokens}-token limit')

    notes.changes.append(f'applied the "{preset.label}" style template')
    return LintResult(
        original=prompt, prompt=preset.render(text), negative_prompt=negative, framing=chosen_framing,
        identity_scale=identity, controlnet_scale=preset.controlnet_scale, guidance_scale=preset.guidance_scale,
        style=preset.name, user_prompt=text, warnings=tuple(notes.warnings), changes=tuple(notes.changes),
        truncated=bool(cut))


# --- helpers -------------------------------------------------------------------------------------


@dataclass
class _Notes:
    """What the linter tells the user while it works (internal, so mutable)."""

    warnings: list[PromptWarning] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)

    def warn(self, code: str, message: str) -> None:
        self.warnings.append(PromptWarning(code, message))


def _check_nsfw(text: str, negative: str, policy: str, notes: _Notes) -> tuple[str, str]:
    """Apply the NSFW policy; returns the prompt text and the negative prompt."""
    if policy == "allow":
        return text, negative
    text, found = _strip(text, _NSFW)
    if not found:
        return text, negative
    if policy == "block":
        raise PromptRejectedError(found)
    notes.warn("nsfw", f"I don't make nude or sexual images, so I removed {_quoted(found)}.")
    notes.changes.extend(f'removed "{p}" (not allowed)' for p in found)
    notes.changes.append(f'added "{_NSFW_NEGATIVE}" to the negative prompt')
    return _tidy(text), f"{negative}, {_NSFW_NEGATIVE}"


def _check_non_photo(text: str, preset: StylePreset, notes: _Notes) -> float:
    """Drawn looks asked of a photo style: suggest the preset made for them; returns the identity weight."""
    suggested = _non_photo_styles(text) if preset.photographic else {}
    if not suggested:
        return preset.identity_scale
    words = tuple(dict.fromkeys(w for ws in suggested.values() for w in ws))
    labels = _either(STYLES[name].label for name in suggested)
    boosted = _clamp(preset.identity_scale + NON_PHOTO_WORDS_BOOST)
    notes.warn("non_photo_style",
               f"You asked for {_quoted(words)}, but {preset.label} is a photo style. Pick the {labels} style for "
               "that look: its settings are tuned to keep your likeness. Meanwhile I raised the identity weight "
               "a little.")
    notes.changes.append(f"raised the identity weight from {preset.identity_scale:.2f} to {boosted:.2f} "
                         f"(the prompt asks for {_quoted(words)})")
    return boosted


@dataclass(frozen=True)
class _Removed:
    text: str
    found: dict[_Removal, tuple[str, ...]]  # rule -> phrases it removed, rules in table order


def _apply_removals(text: str) -> _Removed:
    """Run every removal rule, in passes: one removal can join words into a new match for another."""
    found: dict[_Removal, tuple[str, ...]] = {}
    for _ in range(len(_REMOVALS) + 1):
        before = text
        for rule in _REMOVALS:
            replacement = "" if rule in found else rule.replacement  # replace once, then just remove
            text, phrases = _strip(text, rule.pattern, replacement)
            if phrases:
                found[rule] = found.get(rule, ()) + phrases
        if text == before:
            break
    ordered = {rule: found[rule] for rule in _REMOVALS if rule in found}
    return _Removed(_tidy(text) if ordered else text, ordered)


def _strip(text: str, pattern: re.Pattern[str], replacement: str = "") -> tuple[str, tuple[str, ...]]:
    """Remove every match (the first one replaced, when a replacement is given) until none is left."""
    found: list[str] = []

    def substitute(match: re.Match[str]) -> str:
        found.append(_squash(match.group(0)))
        return f" {replacement} " if replacement and len(found) == 1 else " "

    while pattern.search(text):
        text = _squash(pattern.sub(substitute, text))
    return text, tuple(found)


def _distant_advice(framing: str | None, style_framing: str, changes: list[str]) -> tuple[str, str]:
    """Warning text and framing for distant wording: the framing setting, not words, sets the distance."""
    if framing is not None:
        return ("I removed {phrases}: the " + framing + " framing you chose already sets how much of you is in the "
                "picture."), framing
    if style_framing != _AUTO_FARTHEST:
        changes.append(f"framing: {_AUTO_FARTHEST} instead of the style's {style_framing} "
                       "(the prompt asked for a wider shot)")
    return ("Wide and full-body shots make your face tiny, and the likeness fades as the face shrinks. I removed "
            "{phrases} and will frame you " + _AUTO_FARTHEST + "; choose full-body framing if you really want it."
            ), _AUTO_FARTHEST


def _non_photo_styles(text: str) -> dict[str, tuple[str, ...]]:
    found = {name: _find(pattern, text) for pattern, name in _NON_PHOTO}
    return {name: words for name, words in found.items() if words}


def _find(pattern: re.Pattern[str], text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(_squash(m.group(0)) for m in pattern.finditer(text)))


def _fit(text: str, preset: StylePreset, max_tokens: int, count: Callable[[str], int]) -> tuple[str, str]:
    """Cut the user's words (never the template's) at a word boundary until the whole prompt fits.

    CLIP silently drops everything after its limit, which would cut the style words at the end of
    the template; cutting the user's tail instead keeps the look and says what was lost.
    """
    if count(preset.render(text)) <= max_tokens:
        return text, ""
    words = list(re.finditer(r"\S+", text))

    def kept(n: int) -> str:
        return text[: words[n - 1].end()].rstrip(" ,;:-") if n else ""

    lo, hi = 1, len(words) - 1  # the largest n in [lo, hi] that fits; keep at least one word
    best = 1
    while lo <= hi:
        mid = (lo + hi) // 2
        if count(preset.render(kept(mid))) <= max_tokens:
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    return kept(best), text[words[best].start():] if best < len(words) else ""


def _tidy(text: str) -> str:
    """Clean up what a removal leaves behind: ' ,', ',,', empty brackets or quotes, leading/trailing commas."""
    text = re.sub(r"\(\s*\)|\[\s*\]|\{\s*\}|\"\s*\"|'\s*'|“\s*”|‘\s*’", " ", text)
    text = re.sub(r"\s+([,.;:!?)\]])", r"\1", text)
    text = re.sub(r"([,;:])(?:\s*[,;:])+", r"\1", text)
    text = re.sub(r"([.!?])(?:\s*[,;:])+", r"\1", text)
    text = re.sub(r"[,;:]+\s*([.!?])", r"\1", text)
    text = re.sub(r"^[\s,.;:!?-]+|[\s,;:-]+$", "", text)
    return _squash(text)


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _quoted(phrases: Iterable[str]) -> str:
    return ", ".join(f'"{p}"' for p in phrases)


def _either(items: Iterable[str]) -> str:
    *rest, last = items
    return f"{', '.join(rest)} or {last}" if rest else last


def _clamp(value: float) -> float:
    low, high = SCALE_LIMITS
    return round(min(max(value, low), high), 4)
