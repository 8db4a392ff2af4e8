"""The identity-budget prompt linter and the style table."""

from __future__ import annotations

import dataclasses
import re

import pytest

from generation.prompts import (
    SCALE_LIMITS,
    LintResult,
    PromptRejectedError,
    UnknownFramingError,
    approximate_token_count,
    lint_prompt,
)
from generation.styles import DEFAULT_FRAMING, DEFAULT_STYLE, FRAMINGS, STYLES, UnknownStyleError, get_style

STUDIO = STYLES["studio-headshot"]
TEMPLATE_CHANGE = 'applied the "Studio headshot" style template'

MESSY = (
    "a full body shot of me in a crowd with friends, fisheye, backlit, wearing a mask, looks like Brad Pitt",
    "me and my family, silhouette against the sunset, ultra wide shot, instagram filter, aerial view",
    "a knight (full body), in the distance, clown makeup, two people, glitch art.",
    "A Brad Pitt lookalike in Rome, shot on a 14mm lens, face in shadow, as a young couple",
    "portrait of me, tiny figure, group of students, face paint, pixelated, blue eyes, cartoon",
)


def codes(result: LintResult) -> list[str]:
    return [w.code for w in result.warnings]


def structural_changes(result: LintResult) -> list[str]:
    """Changes to the user's words or framing (not the template, not the weights)."""
    return [c for c in result.changes if c.startswith(("removed", "replaced", "cut", "framing", "the prompt was"))]


# --- style table -----------------------------------------------------------------------------------


def test_table_has_the_expected_styles_and_valid_values() -> None:
    assert DEFAULT_STYLE == "studio-headshot"
    assert DEFAULT_FRAMING == "head-and-shoulders"
    assert FRAMINGS == ("close-up", "head-and-shoulders", "half-body", "full-body")
    assert {"studio-headshot", "cinematic", "editorial", "film", "watercolor", "anime"} <= set(STYLES)
    assert len(STYLES) >= 7
    low, high = SCALE_LIMITS
    for name, preset in STYLES.items():
        assert preset.name == name
        assert preset.label and preset.description and preset.negative_prompt and preset.default_subject
        assert preset.template.count("{prompt}") == 1
        assert low <= preset.identity_scale <= high and low <= preset.controlnet_scale <= high
        assert 1.0 <= preset.guidance_scale <= 12.0
        assert preset.framing in FRAMINGS


def test_stylised_styles_carry_higher_identity_weight() -> None:
    assert not STYLES["watercolor"].photographic and not STYLES["anime"].photographic
    for preset in STYLES.values():
        if not preset.photographic:
            assert preset.identity_scale > STUDIO.identity_scale, preset.name
    weights = {(p.identity_scale, p.controlnet_scale, p.guidance_scale) for p in STYLES.values()}
    assert len(weights) > 1


@pytest.mark.parametrize("name", sorted(STYLES))
def test_templates_and_default_subjects_trigger_nothing(name: str) -> None:
    preset = STYLES[name]
    result = lint_prompt(preset.default_subject, style=name)
    assert result.warnings == ()
    assert result.prompt == preset.render(preset.default_subject)
    # The template itself must never contain what the linter removes, or a removal could come back.
    assert structural_changes(lint_prompt(preset.render("me"), style=name)) == []
    assert approximate_token_count(result.prompt) <= 77


def test_style_lookup_is_case_insensitive_and_results_are_frozen() -> None:
    assert get_style(" Anime ") is STYLES["anime"]
    result = lint_prompt("a man", style="ANIME")
    assert result.style == "anime"
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.prompt = "x"  # type: ignore[misc]


# --- a clean prompt --------------------------------------------------------------------------------


def test_clean_prompt_only_gets_the_template() -> None:
    result = lint_prompt("a smiling woman in a red coat in an autumn park")
    assert result.warnings == ()
    assert result.changes == (TEMPLATE_CHANGE,)
    assert result.prompt == STUDIO.render("a smiling woman in a red coat in an autumn park")
    assert result.negative_prompt == STUDIO.negative_prompt
    assert result.framing == STUDIO.framing
    assert (result.identity_scale, result.controlnet_scale) == (STUDIO.identity_scale, STUDIO.controlnet_scale)
    assert result.guidance_scale == STUDIO.guidance_scale
    assert not result.truncated


def test_each_style_returns_its_own_settings() -> None:
    anime = lint_prompt("a man", style="anime")
    assert anime.prompt == STYLES["anime"].render("a man")
    assert anime.negative_prompt == STYLES["anime"].negative_prompt
    assert anime.identity_scale == STYLES["anime"].identity_scale
    assert anime.framing == STYLES["anime"].framing
    assert lint_prompt("a man", style="editorial").framing == "half-body"


# --- removals by category --------------------------------------------------------------------------

REMOVALS = [
    # (prompt, warning code, phrase that must be gone)
    ("a full body shot of me on a beach", "distant_framing", "full body shot"),
    ("me, full-body, smiling", "distant_framing", "full-body"),
    ("a wide shot of me in the mountains", "distant_framing", "wide shot"),
    ("me standing on a cliff, seen from afar", "distant_framing", "from afar"),
    ("a castle with me in the distance", "distant_framing", "in the distance"),
    ("a landscape shot of the alps with me", "distant_framing", "landscape shot"),
    ("a tiny figure on a bridge", "distant_framing", "tiny figure"),
    ("aerial view of me on a boat", "distant_framing", "aerial view"),
    ("a bird's-eye view of me", "distant_framing", "eye view"),
    ("me, head-to-toe, in a suit", "distant_framing", "head-to-toe"),
    ("me in a crowd at a concert", "several_people", "crowd"),
    ("me and a group of friends", "several_people", "group of friends"),
    ("me at the beach with friends", "several_people", "with friends"),
    ("a happy couple on a bench", "several_people", "couple"),
    ("a family photo in the garden", "several_people", "family photo"),
    ("two people talking in a cafe", "several_people", "two people"),
    ("me, crowds cheering", "several_people", "crowds"),
    ("portrait of me, silhouette, sunset", "silhouette", "silhouette"),
    ("me, backlit by the window", "silhouette", "backlit"),
    ("me, rim light only", "silhouette", "rim light only"),
    ("me standing in shadow", "silhouette", "in shadow"),
    ("portrait with a dark face", "silhouette", "dark face"),
    ("me with heavy makeup", "face_cover", "heavy makeup"),
    ("me, clown makeup, circus", "face_cover", "clown makeup"),
    ("me with face paint", "face_cover", "face paint"),
    ("me wearing a mask", "face_cover", "mask"),
    ("me with masks on the wall", "face_cover", "masks"),
    ("a masked hero on a roof", "face_cover", "masked"),
    ("me, instagram filter", "face_cover", "instagram filter"),
    ("me, beauty filter, soft skin", "face_cover", "beauty filter"),
    ("me, glitch effect", "face_cover", "glitch"),
    ("me, pixelated", "face_cover", "pixelated"),
    ("a man who looks like Brad Pitt in a suit", "lookalike", "looks like brad pitt"),
    ("me looking like a famous actor", "lookalike", "like a famous actor"),
    ("a Taylor Swift lookalike on stage", "lookalike", "lookalike"),
    ("a celebrity look-alike", "lookalike", "look-alike"),
]


@pytest.mark.parametrize(("prompt", "code", "phrase"), REMOVALS)
def test_diluting_phrases_are_removed_with_a_warning(prompt: str, code: str, phrase: str) -> None:
    result = lint_prompt(prompt)
    assert code in codes(result)
    assert phrase.lower() not in result.prompt.lower()
    assert phrase.lower() not in result.user_prompt.lower()
    assert any(c.startswith("removed") and phrase.lower() in c.lower() for c in result.changes)


@pytest.mark.parametrize(
    ("prompt", "phrase"),
    [("me, fisheye", "fisheye"), ("me through a fish-eye lens", "fish-eye"), ("me, ultra wide", "ultra wide"),
     ("me, shot on a 14mm lens", "14mm"), ("a wide-angle photo of me", "wide-angle"), ("me, 16 mm", "16 mm")],
)
def test_wide_lenses_are_replaced_by_a_portrait_lens(prompt: str, phrase: str) -> None:
    result = lint_prompt(prompt)
    assert codes(result) == ["wide_lens"]
    assert phrase not in result.prompt.lower()
    assert "85mm portrait lens" in result.user_prompt
    assert "85mm portrait lens" in result.warnings[0].message
    assert any(c.startswith("replaced") and phrase in c.lower() for c in result.changes)


def test_several_lenses_give_one_portrait_lens() -> None:
    result = lint_prompt("me, fisheye, 14mm, ultra wide")
    assert result.user_prompt.count("85mm portrait lens") == 1
    assert sum(c.startswith("replaced") for c in result.changes) == 1
    assert sum(c.startswith("removed") for c in result.changes) == 2


@pytest.mark.parametrize(
    "prompt", ["FULL BODY portrait of me", "me in a CROWD", "Fish-Eye shot of me", "me, BACKLIT", "me, Face Paint"]
)
def test_matching_is_case_insensitive(prompt: str) -> None:
    result = lint_prompt(prompt)
    assert result.warnings
    assert structural_changes(result)


@pytest.mark.parametrize(
    "prompt",
    [
        "me, unmasked, smiling",  # the opposite of a mask
        "me on a damask sofa",  # "mask" inside another word
        "me with grouped balloons",  # "group" needs "group of ..."
        "me on a crowded street",  # a busy place; the subject is still one person
        "me, 35mm, 85mm",  # portrait and normal lenses
        "me in front of an old castle",  # "old" only counts for people
        "me holding a couple of flowers",  # "a couple of" is a quantity
        "me, wider smile, wideangler",  # neither "wide shot" nor "wide-angle"
        "a young-looking forest",  # hyphenated compounds are words of their own
        "a mask-like leaf",
    ],
)
def test_word_boundaries(prompt: str) -> None:
    result = lint_prompt(prompt)
    assert structural_changes(result) == []
    assert "face_descriptor" not in codes(result)


def test_quoted_phrases_are_still_found() -> None:
    single = lint_prompt("me, 'full body', smiling")
    assert "distant_framing" in codes(single)
    assert single.user_prompt == "me, smiling"
    double = lint_prompt('me "in a crowd"')
    assert "several_people" in codes(double)
    assert double.user_prompt == "me"


def test_removal_leaves_no_stray_punctuation() -> None:
    assert lint_prompt("a knight (full body), in the distance.").user_prompt == "a knight."
    assert lint_prompt("me, , in a crowd, smiling ,").user_prompt == "me, smiling"


@pytest.mark.parametrize("prompt", MESSY)
def test_every_change_is_listed(prompt: str) -> None:
    """Every word that disappeared from the user's prompt is named in some change."""
    result = lint_prompt(prompt)
    kept = set(re.findall(r"[\w'-]+", result.user_prompt.lower()))
    listed = set(re.findall(r"[\w'-]+", " ".join(result.changes).lower()))
    for word in re.findall(r"[\w'-]+", prompt.lower()):
        assert word in kept or word in listed, word
    assert len(result.changes) >= len(result.warnings)
    assert result.changes[-1] == TEMPLATE_CHANGE


@pytest.mark.parametrize("prompt", MESSY)
def test_linting_twice_removes_nothing_new(prompt: str) -> None:
    first = lint_prompt(prompt)
    second = lint_prompt(first.user_prompt)
    assert structural_changes(second) == []
    assert second.user_prompt == first.user_prompt
    assert second.prompt == first.prompt


# --- framing ---------------------------------------------------------------------------------------


def test_distant_wording_suggests_a_closer_framing() -> None:
    result = lint_prompt("a full body shot of me on a beach")
    assert result.framing == "half-body"
    assert any(c.startswith("framing: half-body") for c in result.changes)
    assert "half-body" in result.warnings[0].message


def test_explicit_full_body_framing_is_kept_with_a_warning() -> None:
    result = lint_prompt("me on a beach", framing="full-body")
    assert result.framing == "full-body"
    assert codes(result) == ["full_body_framing"]
    assert "re-render" in result.warnings[0].message
    assert result.changes == (TEMPLATE_CHANGE,)


def test_explicit_full_body_with_distant_words() -> None:
    result = lint_prompt("a full body shot of me on a beach", framing="full-body")
    assert result.framing == "full-body"
    assert codes(result) == ["distant_framing", "full_body_framing"]
    assert "full body" not in result.prompt.lower()
    assert not any(c.startswith("framing") for c in result.changes)


@pytest.mark.parametrize("framing", ["close-up", "head-and-shoulders", "half-body"])
def test_explicit_closer_framing_is_respected(framing: str) -> None:
    assert lint_prompt("me", framing=framing).framing == framing
    result = lint_prompt("wide shot of me", framing=framing)
    assert result.framing == framing
    assert "distant_framing" in codes(result)


def test_no_distant_wording_keeps_the_style_framing() -> None:
    assert lint_prompt("me in a park").framing == DEFAULT_FRAMING


# --- warn-only categories --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "style"),
    [("cartoon", "cartoon"), ("Pixar style", "cartoon"), ("3d render", "cartoon"), ("lego", "cartoon"),
     ("caricature", "cartoon"), ("anime", "anime"), ("chibi", "anime"), ("watercolour", "watercolor")],
)
def test_drawn_looks_in_a_photo_style_suggest_a_preset(word: str, style: str) -> None:
    result = lint_prompt(f"me as a {word} character", style="cinematic")
    assert codes(result) == ["non_photo_style"]
    assert STYLES[style].label in result.warnings[0].message
    assert word in result.user_prompt  # suggested, not removed
    assert result.identity_scale > STYLES["cinematic"].identity_scale
    assert result.controlnet_scale == STYLES["cinematic"].controlnet_scale
    assert any("identity weight" in c for c in result.changes)


def test_drawn_looks_in_a_stylised_style_pass() -> None:
    result = lint_prompt("me as an anime character", style="anime")
    assert result.warnings == ()
    assert result.identity_scale == STYLES["anime"].identity_scale


@pytest.mark.parametrize(
    "phrase",
    ["blue eyes", "green-eyed", "blonde", "brunette", "red hair", "young", "elderly", "old man",
     "20 years old", "35-year-old", "in her 30s", "asian woman", "caucasian", "dark-skinned", "different face"],
)
def test_face_descriptors_warn_but_stay(phrase: str) -> None:
    result = lint_prompt(f"portrait of me, {phrase}, smiling")
    assert codes(result) == ["face_descriptor"]
    assert phrase in result.user_prompt
    assert phrase in result.warnings[0].message
    assert result.changes == (TEMPLATE_CHANGE,)


def test_lookalike_removed_but_descriptors_kept() -> None:
    result = lint_prompt("a young man who looks like Brad Pitt, blue eyes")
    assert codes(result) == ["lookalike", "face_descriptor"]
    assert result.user_prompt == "a young man, blue eyes"


# --- NSFW ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prompt", ["me, nude on a beach", "NSFW photo of me", "me naked", "topless me"])
def test_nsfw_block_raises(prompt: str) -> None:
    with pytest.raises(PromptRejectedError) as info:
        lint_prompt(prompt)
    assert "nude or sexual" in str(info.value)
    assert info.value.phrases


def test_nsfw_warn_strips_and_adds_a_negative() -> None:
    result = lint_prompt("me, nude on a beach", nsfw_policy="warn")
    assert codes(result) == ["nsfw"]
    assert "nude" not in result.prompt.lower()
    assert result.user_prompt == "me, on a beach"
    assert "nudity" in result.negative_prompt
    assert any(c.startswith('removed "nude"') for c in result.changes)
    assert any("negative prompt" in c for c in result.changes)


def test_nsfw_allow_keeps_everything() -> None:
    result = lint_prompt("me, nude on a beach", nsfw_policy="allow")
    assert result.warnings == ()
    assert result.user_prompt == "me, nude on a beach"
    assert result.negative_prompt == STUDIO.negative_prompt


def test_unknown_nsfw_policy() -> None:
    with pytest.raises(ValueError, match="block, warn, allow"):
        lint_prompt("me", nsfw_policy="maybe")


# --- empty and long prompts ------------------------------------------------------------------------


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t"])
def test_empty_prompt_uses_the_default_subject(prompt: str) -> None:
    result = lint_prompt(prompt, style="anime")
    assert result.user_prompt == STYLES["anime"].default_subject
    assert result.prompt == STYLES["anime"].render(STYLES["anime"].default_subject)
    assert result.original == prompt
    assert any("default subject" in c for c in result.changes)
    assert result.warnings == ()


def test_prompt_emptied_by_removals_uses_the_default_subject() -> None:
    result = lint_prompt("full body, in a crowd")
    assert result.user_prompt == STUDIO.default_subject
    assert any("empty after the removals" in c for c in result.changes)


def test_truncation_with_the_callers_tokenizer() -> None:
    def words(text: str) -> int:
        return len(text.replace(",", " ").split())

    template_words = words(STUDIO.render(""))
    result = lint_prompt("one two three four five six seven", max_tokens=template_words + 4, count_tokens=words)
    assert result.truncated
    assert result.user_prompt == "one two three four"
    assert words(result.prompt) <= template_words + 4
    assert result.prompt.endswith(STUDIO.template.split("{prompt}")[1])  # the style words survive
    assert codes(result) == ["too_long"]
    assert '"five six seven"' in result.warnings[0].message
    assert 'cut "five six seven" to fit the' in " ".join(result.changes)


def test_truncation_with_the_approximate_counter() -> None:
    prompt = ", ".join(f"detail{i}" for i in range(100))
    result = lint_prompt(prompt)
    assert result.truncated
    assert approximate_token_count(result.prompt) <= 77
    assert approximate_token_count(STUDIO.render(result.user_prompt + ", detail99")) > 77
    assert result.user_prompt.startswith("detail0, detail1")
    assert not result.user_prompt.endswith(",")
    cut = next(c for c in result.changes if c.startswith("cut"))
    assert "detail99" in cut and result.user_prompt + ", " + cut.split('"')[1] == prompt


def test_a_prompt_that_fits_is_not_truncated() -> None:
    result = lint_prompt("a man in a park", max_tokens=77)
    assert not result.truncated
    assert approximate_token_count("a man, smiling.") == 5 + 2


# --- bad choices -----------------------------------------------------------------------------------


def test_unknown_style_lists_the_choices() -> None:
    with pytest.raises(UnknownStyleError) as info:
        lint_prompt("me", style="vaporwave")
    assert isinstance(info.value, ValueError)
    for name in STYLES:
        assert name in str(info.value)


def test_unknown_framing_lists_the_choices() -> None:
    with pytest.raises(UnknownFramingError) as info:
        lint_prompt("me", framing="extreme-long")
    assert isinstance(info.value, ValueError)
    for name in FRAMINGS:
        assert name in str(info.value)
