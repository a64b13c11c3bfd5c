"""The arena: one prompt, two models' answers side by side, hidden and randomly placed; the user votes.

    POST /v1/arena    {"messages", "temperature"?, "max_tokens"?, "seed"?, "top_p"?}
                      -> {"id": "battle-...", "answers": [{"completion_id", "content", "finish_reason"} x 2]}
    GET  /arena       the arena page
    vote: POST /v1/feedback {"battle_id", "vote": "left"|"right"|"tie"|"both_bad"} -> the record, with the
          models' names ("left": {"model"}, "right": {"model"}) revealed

Each side is a served model with its own engine and scheduler (its own worker thread), so the two answers
are generated at the same time. Both answers and the battle are kept in the store before the reply is sent.
(The votes refer to them, so "store": false is refused with a 400, not ignored.)
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Awaitable, Callable

from fastapi import APIRouter, Depends, Request

from chatforge.serve.tools import RequestError, template_messages


@dataclass
class Side:
    """One model of the arena, as the app serves it."""

    model: str  # its id in the store's keeper
    prepare: Callable  # (request, messages) -> (prompt ids, SamplingParams); raises the app's errors
    answer: Callable[..., Awaitable]  # (request, prompt, params) -> Completion


def arena_router(sides: list[Side], keeper, check_key: Callable, read_json: Callable, parse: Callable,
                 request_type: type, api_error: type, new_id: Callable[[str], str]) -> APIRouter:
    router = APIRouter(dependencies=[Depends(check_key)])

    async def battle(request: Request):
        if not keeper.enabled:
            raise api_error(400, "the arena needs the log to keep votes; this server runs with --no-log",
                            code="logging_disabled")
        req = parse(request_type, await read_json(request))
        if req.stream:
            raise api_error(400, "the arena answers are not streamed: leave out \"stream\"", param="stream")
        if req.store is False:  # votes refer to the kept answers: an arena that kept nothing could take no vote
            raise api_error(400, "the arena keeps both answers to be voted on: leave out \"store\" (or send "
                                 "\"store\": true)", param="store")
        if req.tools or req.tool_choice is not None:  # both answers are plain text: tools would go unheard
            raise api_error(400, "the arena does not take tools: leave out \"tools\" and \"tool_choice\"",
                            param="tools" if req.tools else "tool_choice")
        try:  # the chat route's message checks (content null, tool results of no call, ...): a 4xx, never a 500
            messages = template_messages(req.messages)
        except RequestError as e:
            raise api_error(e.status, e.message, param=e.param, code="invalid_value") from None
        prepared = [await side.prepare(req, messages) for side in sides]  # every check before any generation
        conversation = new_id("conv")
        ids = [new_id("chatcmpl") for _ in sides]
        keeps = [keeper.callback(cid, side.model, messages, params,
                                 req.model_copy(update={"metadata": {"conversation_id": conversation}, "store": True}))
                 for cid, side, (_, params) in zip(ids, sides, prepared)]
        done = await asyncio.gather(*(side.answer(request, prompt, params)
                                      for side, (prompt, params) in zip(sides, prepared)))
        for keep, d in zip(keeps, done):
            await keep(d)
        order = [0, 1]
        random.shuffle(order)  # which model is on the left: a coin toss per battle
        battle_id = await keeper.call(keeper.store.new_battle, ids[order[0]], ids[order[1]])
        return {"id": battle_id, "object": "arena.battle",
                "answers": [{"completion_id": ids[i], "content": done[i].text,
                             "finish_reason": done[i].finish_reason} for i in order]}

    router.add_api_route("/v1/arena", battle, methods=["POST"])
    return router
