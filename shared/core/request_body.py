"""Request bodies the routes read themselves (a route serving two body shapes, a multipart upload next to
JSON): JSON parsing, pydantic validation with FastAPI's error locations, and the chat message limits."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from shared.core.errors import AppError, BadRequest, PayloadTooLarge
from shared.core.settings import get_settings

Model = TypeVar("Model", bound=BaseModel)


async def json_body(request: Request) -> Any:
    """The body as JSON; 400 invalid_json when it is not."""
    try:
        return json.loads(await request.body())
    except ValueError:
        raise BadRequest("The request body is not valid JSON.", code="invalid_json") from None


def validate(model: type[Model], body: Any) -> Model:
    """`body` (parsed JSON, or the raw bytes of a JSON body) as `model`; a 422 shaped as FastAPI gives for a
    typed body (locations start at "body")."""
    try:
        if isinstance(body, bytes):
            return model.model_validate_json(body or b"{}")
        return model.model_validate(body)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])}
                                      for e in exc.errors(include_url=False)]) from None


def check_messages(turn: str = "", count: int = 1, earlier: Sequence[str] = (), *,
                   error: type[AppError] = PayloadTooLarge) -> None:
    """MAX_MESSAGE_CHARS for the turn's message (and any `earlier` ones the request carries as history) and
    MAX_REQUEST_MESSAGES for the `count` of messages. `error`: the class the face answers with (413 natively,
    400 on the OpenAI-compatible face, whose clients expect it)."""
    settings = get_settings()
    most, limit = settings.max_request_messages, settings.max_message_chars
    if len(turn) > limit:
        raise error(f"The message is {len(turn)} characters long; the limit is {limit}.", code="message_too_long",
                    details={"max_chars": limit, "chars": len(turn)})
    if count > most:
        raise error(f"A request may carry at most {most} messages.", code="too_many_messages",
                    details={"max_messages": most, "messages": count})
    longest = max(map(len, earlier), default=0)
    if longest > limit:
        raise error(f"An earlier message is {longest} characters long; the limit is {limit}.",
                    code="message_too_long", details={"max_chars": limit, "chars": longest})
