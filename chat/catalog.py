"""What the app knows about models: context windows, which take images, and prices.

The reference's table ("Models and Pricing") for the Yi models; settings add to it for
other OpenAI-compatible providers (VISION_MODELS, MODEL_CONTEXT_WINDOWS). A model the
app knows nothing about gets no window: its requests are sent whole and the provider
decides, as before the app fitted anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings


@dataclass(frozen=True)
class ModelInfo:
    context_window: int | None  # tokens, prompt and answer together; None: unknown
    vision: bool
    # US dollars per 1M tokens, in and out; None where the price is unknown.
    price_in: Decimal | None = None
    price_out: Decimal | None = None


# The reference's "32K" is read as 32 * 1024, as the simulator does.
REFERENCE_MODELS = {
    "yi-large": ModelInfo(32 * 1024, False, Decimal(3), Decimal(3)),
    "yi-large-turbo": ModelInfo(4 * 1024, False, Decimal("0.19"), Decimal("0.19")),
    "yi-large-fc": ModelInfo(32 * 1024, False, Decimal(3), Decimal(3)),
    "yi-vision": ModelInfo(16 * 1024, True, Decimal("0.19"), Decimal("0.19")),
}


def model_info(model: str) -> ModelInfo:
    known = REFERENCE_MODELS.get(model, ModelInfo(None, False))
    window = settings.MODEL_CONTEXT_WINDOWS.get(model, known.context_window)
    vision = known.vision or model in settings.VISION_MODELS or model == settings.VISION_MODEL
    return ModelInfo(window, vision, known.price_in, known.price_out)


def model_for_images(requested: str) -> str | None:
    """The model that answers a thread holding images when `requested` was picked: itself
    if it takes images, else the configured VISION_MODEL (None when that is switched off)."""
    if model_info(requested).vision:
        return requested
    return settings.VISION_MODEL or None


def tokens_cost(model: str, prompt_tokens: int | None, completion_tokens: int | None) -> Decimal | None:
    """US dollars for so many tokens in and out on `model`, by the reference's prices;
    None where the price or the count is unknown."""
    info = model_info(model)
    if info.price_in is None or info.price_out is None or (prompt_tokens is None and completion_tokens is None):
        return None
    return (info.price_in * (prompt_tokens or 0) + info.price_out * (completion_tokens or 0)) / 1_000_000
