"""What the app knows about models: context windows, which take images and call tools,
prices, and the models a credential may use.

The reference's table ("Models and Pricing") for the Yi models; settings add to it for
other OpenAI-compatible providers (VISION_MODELS, MODEL_CONTEXT_WINDOWS), and a key its
"Model for images". A model the app knows nothing about gets no window: its requests are
sent whole and the provider decides, as before the app fitted anything. The model picker
shows what is known and nothing for the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.utils.translation import gettext_noop

from chat.credentials import client_for, key_host
from chat.refusals import SendRefused
from chat.upstream import Credential


@dataclass(frozen=True)
class ModelInfo:
    context_window: int | None  # tokens, prompt and answer together; None: unknown
    vision: bool
    # US dollars per 1M tokens, in and out; None where the price is unknown.
    price_in: Decimal | None = None
    price_out: Decimal | None = None
    tools: bool = False  # calls the tools a request offers (the reference: yi-large-fc)


# The reference's "32K" is read as 32 * 1024, as the simulator does.
REFERENCE_MODELS = {
    "yi-large": ModelInfo(32 * 1024, False, Decimal(3), Decimal(3)),
    "yi-large-turbo": ModelInfo(4 * 1024, False, Decimal("0.19"), Decimal("0.19")),
    "yi-large-fc": ModelInfo(32 * 1024, False, Decimal(3), Decimal(3), tools=True),
    "yi-vision": ModelInfo(16 * 1024, True, Decimal("0.19"), Decimal("0.19")),
}
# The Yi API's model for images: a key to one of 01.AI's hosts uses it unless it names another.
YI_IMAGES_MODEL = "yi-vision"
# How long a credential's model list is kept before `GET /models` is asked again.
MODELS_CACHE_SECONDS = 300


def model_info(model: str) -> ModelInfo:
    known = REFERENCE_MODELS.get(model, ModelInfo(None, False))
    window = settings.MODEL_CONTEXT_WINDOWS.get(model, known.context_window)
    vision = known.vision or model in settings.VISION_MODELS or model == settings.VISION_MODEL
    return ModelInfo(window, vision, known.price_in, known.price_out, known.tools)


def model_to_dict(model: dict[str, Any], *, images_model: str = "") -> dict[str, Any]:
    """A model as the picker shows it: the provider's id and owner, and what the app knows
    of it (None, or False, where it knows nothing: another provider's models; the key's
    `images_model` takes images). Prices are strings, exact (JSON numbers are floats)."""
    info = model_info(model["id"])
    return {
        "id": model["id"],
        "owned_by": str(model.get("owned_by") or ""),
        "context_window": info.context_window,
        "vision": info.vision or model["id"] == images_model,
        "tools": info.tools,
        "price_in": None if info.price_in is None else str(info.price_in),
        "price_out": None if info.price_out is None else str(info.price_out),
    }


async def models_list(*, credential: Credential, refresh: bool = False) -> list[dict[str, Any]]:
    """The models `credential` may use (its provider's `GET /models`) as the picker shows
    them, kept MODELS_CACHE_SECONDS per credential (one person's list is never another's);
    `refresh` asks the provider again. Raises UpstreamError when the provider cannot say."""
    key = f"yiweb:models:{credential.cache_id}"
    listed = None if refresh else await cache.aget(key)
    if listed is None:
        # As the provider said it (the Yi API's `ownedBy`, the others' `owned_by`); what
        # the app knows of each is added at every read, so a changed setting shows at once.
        listed = [{"id": m["id"], "owned_by": m.get("owned_by") or m.get("ownedBy") or ""}
                  for m in await client_for(credential).list_models()]
        await cache.aset(key, listed, MODELS_CACHE_SECONDS)
    return [model_to_dict(m, images_model=images_model_of(credential)) for m in listed]


def models_known(*, credential: Credential) -> list[dict[str, Any]]:
    """What the picker offers when the provider cannot list its models: the reference's
    models for the Yi API, nothing for another (its default model is still offered)."""
    return [model_to_dict({"id": m, "owned_by": "01.ai"}) for m in REFERENCE_MODELS] if credential.is_yi else []


def images_model_of(credential: Credential) -> str:
    """The model that answers images sent with `credential` when the picked model does not
    take them, "" if none: the key's own "Model for images"; else VISION_MODEL for the
    server's provider (YI_API_BASE, whatever it points at; "" switches it off); else
    yi-vision on 01.AI's hosts. Another provider gets none it did not name: it was sent
    "yi-vision", which it did not know, and the answer ended in not_found (an audit's find)."""
    if credential.images_model:
        return credential.images_model
    if credential.yi:
        return settings.VISION_MODEL
    return YI_IMAGES_MODEL if credential.is_yi else ""


def model_for_images(requested: str, *, credential: Credential) -> str | None:
    """The model that answers a thread holding images when `requested` was picked and is
    sent with `credential`: itself if it is known to take images, else the credential's
    model for images (None when it has none: `images_refused` says why)."""
    images_model = images_model_of(credential)
    if model_info(requested).vision or requested == images_model:
        return requested
    return images_model or None


def images_refused(requested: str, *, credential: Credential) -> SendRefused:
    """The refusal of images for `requested` when `model_for_images` found no model for them."""
    if credential.key_id is None or credential.yi:
        return SendRefused("model_takes_no_images", gettext_noop(
            "%(model)s does not take images. Pick a model that does, or remove the images."),
            params={"model": requested})
    return SendRefused("model_takes_no_images", gettext_noop(
        "Images need a model that takes them: %(model)s is not known to, and the key “%(label)s” (%(host)s) "
        "names none. Set “Model for images” for this key on the Keys page, or pick a model that takes images."),
        params={"model": requested, "label": credential.label, "host": key_host(credential.base_url)})


def tokens_cost(model: str, prompt_tokens: int | None, completion_tokens: int | None) -> Decimal | None:
    """US dollars for so many tokens in and out on `model`, by the reference's prices;
    None where the price or the count is unknown."""
    info = model_info(model)
    if info.price_in is None or info.price_out is None or (prompt_tokens is None and completion_tokens is None):
        return None
    return (info.price_in * (prompt_tokens or 0) + info.price_out * (completion_tokens or 0)) / 1_000_000
