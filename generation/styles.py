"""The style presets: each look's prompt template and the generation settings tuned for it.

Every tuned number of a look lives in this one table (the prompt linter in prompts.py reads it), so a look
is changed in one place and the bot's /portrait choices, `closeup generate --style` and the linter agree.
"""

from __future__ import annotations

from dataclasses import dataclass

FRAMINGS = ("close-up", "head-and-shoulders", "half-body", "full-body")  # closest first
DEFAULT_FRAMING = "head-and-shoulders"
DEFAULT_STYLE = "studio-headshot"


@dataclass(frozen=True)
class StylePreset:
    """One look: its prompt template and the generation settings tuned for it."""

    name: str
    label: str
    description: str
    template: str  # must contain "{prompt}" once; the user's subject goes first so CLIP weighs it most
    negative_prompt: str
    default_subject: str  # used when the user's prompt is empty
    identity_scale: float  # IP-Adapter (face-token) weight, 0-1.5
    controlnet_scale: float  # IdentityNet weight, 0-1.5
    guidance_scale: float
    framing: str
    photographic: bool  # a photo look; cartoon wording in the prompt fights it

    def render(self, subject: str) -> str:
        return self.template.format(prompt=subject)


_PHOTO_NEGATIVE = ("blurry, lowres, deformed face, distorted features, extra faces, multiple people, "
                   "cartoon, painting, illustration, watermark, text")
_STYLISED_NEGATIVE = ("photo, photorealistic, blurry, lowres, deformed face, extra faces, multiple people, "
                      "watermark, text")

# Every tuned number lives in this table. Photo looks start from the InstantID authors' 0.8 / 0.8
# at CFG ≈ 5. Stylised looks (watercolour, anime, cartoon, painted fantasy) carry HIGHER identity
# weights: the style words pull the face towards the style's generic face, so the face tokens need
# more weight to keep the person recognisable. Their IdentityNet weight rises less, because a strong
# IdentityNet drags the face back towards photographic structure and fights the look.
_PRESETS = (
    StylePreset("studio-headshot", "Studio headshot", "Clean studio portrait with soft light: the most faithful look.",
                "{prompt}, studio headshot, soft key light, 85mm, sharp focus on the eyes, neutral backdrop",
                _PHOTO_NEGATIVE, "a portrait of a person looking at the camera",
                identity_scale=0.80, controlnet_scale=0.80, guidance_scale=5.0, framing="head-and-shoulders",
                photographic=True),
    StylePreset("professional", "Professional / LinkedIn", "Business headshot for a profile picture.",
                "{prompt}, professional headshot, business attire, softly blurred office background, "
                "natural window light, 85mm portrait lens",
                _PHOTO_NEGATIVE, "a confident person smiling at the camera",
                identity_scale=0.80, controlnet_scale=0.80, guidance_scale=5.0, framing="head-and-shoulders",
                photographic=True),
    StylePreset("cinematic", "Cinematic", "A still from a film: moody light, shallow depth of field.",
                "{prompt}, cinematic film still, moody dramatic lighting, shallow depth of field, anamorphic bokeh, "
                "color graded",
                _PHOTO_NEGATIVE, "a person in a quiet city street at dusk",
                identity_scale=0.80, controlnet_scale=0.70, guidance_scale=5.0, framing="head-and-shoulders",
                photographic=True),
    StylePreset("editorial", "Editorial", "Fashion-magazine portrait with styled wardrobe.",
                "{prompt}, editorial fashion portrait, magazine photography, styled wardrobe, large softbox lighting, "
                "crisp detail",
                _PHOTO_NEGATIVE, "a person posing in a designer outfit",
                identity_scale=0.80, controlnet_scale=0.75, guidance_scale=5.0, framing="half-body",
                photographic=True),
    StylePreset("film", "Analog film", "Warm analog film photo with natural grain.",
                "{prompt}, analog film photograph, 35mm, Kodak Portra 400, natural grain, warm soft tones",
                _PHOTO_NEGATIVE, "a candid portrait of a person outdoors in golden hour light",
                identity_scale=0.80, controlnet_scale=0.80, guidance_scale=4.5, framing="head-and-shoulders",
                photographic=True),
    StylePreset("fantasy", "Fantasy", "Painted fantasy character portrait.",
                "{prompt}, fantasy character portrait, ornate costume, ethereal magical light, "
                "detailed digital painting",
                _STYLISED_NEGATIVE, "a heroic adventurer in an enchanted forest",
                identity_scale=0.95, controlnet_scale=0.80, guidance_scale=5.5, framing="head-and-shoulders",
                photographic=False),
    StylePreset("watercolor", "Watercolor", "Loose watercolour painting on paper.",
                "{prompt}, watercolor portrait painting, soft washes of colour, visible paper texture, "
                "loose expressive brushwork",
                _STYLISED_NEGATIVE, "a portrait of a person",
                identity_scale=1.00, controlnet_scale=0.85, guidance_scale=5.5, framing="head-and-shoulders",
                photographic=False),
    StylePreset("anime", "Anime", "Anime character with clean line art and cel shading.",
                "{prompt}, anime portrait, clean line art, cel shading, expressive eyes, vibrant colors",
                _STYLISED_NEGATIVE, "a character portrait of a person",
                identity_scale=1.10, controlnet_scale=0.85, guidance_scale=6.0, framing="head-and-shoulders",
                photographic=False),
    StylePreset("cartoon", "3D cartoon", "Animated-film character with stylised proportions.",
                "{prompt}, 3d animated film character, stylized proportions, soft global illumination, vibrant colors",
                _STYLISED_NEGATIVE, "a cheerful character portrait of a person",
                identity_scale=1.05, controlnet_scale=0.85, guidance_scale=6.0, framing="head-and-shoulders",
                photographic=False),
)
STYLES: dict[str, StylePreset] = {preset.name: preset for preset in _PRESETS}


class UnknownStyleError(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f'Unknown style "{name}". Choose one of: {", ".join(STYLES)}.')


def get_style(name: str) -> StylePreset:
    try:
        return STYLES[name.strip().lower()]
    except KeyError:
        raise UnknownStyleError(name) from None
