"""Keeping exchanges and taking feedback: the server's side of the store (chatforge.store does the writing).

    Keeper                    logs each finished chat or text completion (unless --no-log, or the request's
                              "store": false)
    POST /v1/feedback         {"completion_id", "rating": "up"|"down"} | {"completion_id", "correction"}
                              | {"chosen_id", "rejected_id"} | {"battle_id", "vote": left|right|tie|both_bad},
                              each with an optional "comment"; answers with the stored record (its "id")
    GET  /v1/feedback         the records, paged: ?limit=20&after=ID -> {"data", "first_id", "last_id", "has_more"}

A record is acknowledged only after the store committed it (WAL, fsynced): the completion before its last
chunk or its JSON answer is sent, the feedback before its answer. Store calls run in a worker thread
(asyncio.to_thread), so a slow disk never stalls the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict
from typing import Awaitable, Callable, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field


log = logging.getLogger("chatforge.serve")


class Keeper:
    """Where a server keeps its exchanges: a chatforge Store and the id of each served model in it (or nowhere)."""

    def __init__(self, store=None, model_ids: dict[str, int] | None = None, *, source: str = "serve"):
        self.store, self.model_ids, self.source = store, dict(model_ids or {}), source

    @property
    def enabled(self) -> bool:
        return self.store is not None

    def callback(self, cid: str, model: str, messages: list[dict] | None, params, req, *,
                 prompt: str | None = None) -> Callable | None:
        """An async fn(done) that keeps this exchange (a chat's `messages`, or a raw text `prompt` from
        /v1/completions), or None when it is not to be kept."""
        if not self.wants(model, req.store):
            return None
        started = time.monotonic()
        conversation = (req.metadata or {}).get("conversation_id")

        async def keep(done) -> None:
            await self.keep(cid, model, messages=messages, prompt=prompt, answer=done.text,
                            finish_reason=done.finish_reason, sampling=_sampling(params),
                            prompt_tokens=done.prompt_tokens, completion_tokens=done.completion_tokens,
                            latency_s=time.monotonic() - started, conversation_id=conversation)

        return keep

    def wants(self, model: str, store: bool | None) -> bool:
        """Is an exchange with `model` to be kept (a store is open, the request did not say "store": false)?"""
        return self.enabled and store is not False and model in self.model_ids

    async def keep(self, cid: str, model: str, **record) -> None:
        """Keep one exchange (Store.log_completion's fields) from a worker thread; a failure is logged loudly,
        never raised: the answer itself is fine and is served."""
        try:
            await asyncio.to_thread(self.store.log_completion, id=cid, model_id=self.model_ids[model],
                                    source=self.source, **record)
        except Exception:
            log.exception("could not keep completion %s in %s", cid, self.store.path)

    async def call(self, fn, *args, **kwargs):
        return await asyncio.to_thread(fn, *args, **kwargs)


def _sampling(params) -> dict:
    d = asdict(params)
    d["stop"] = list(d.get("stop") or ())
    return d


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")  # a misspelt field is a 422, never ignored

    completion_id: str | None = Field(None, min_length=1, max_length=200)
    rating: Literal["up", "down"] | None = None
    correction: str | None = Field(None, max_length=200_000)
    chosen_id: str | None = Field(None, min_length=1, max_length=200)
    rejected_id: str | None = Field(None, min_length=1, max_length=200)
    battle_id: str | None = Field(None, min_length=1, max_length=200)
    vote: Literal["left", "right", "tie", "both_bad"] | None = None
    comment: str | None = Field(None, max_length=10_000)


_SHAPES = {  # the fields of each kind of feedback (comment is allowed with all)
    "rating": {"completion_id", "rating"},
    "correction": {"completion_id", "correction"},
    "pair": {"chosen_id", "rejected_id"},
    "vote": {"battle_id", "vote"},
}
_USAGE = ('send one of {"completion_id", "rating": "up"|"down"}, {"completion_id", "correction"}, '
          '{"chosen_id", "rejected_id"} or {"battle_id", "vote"} (each may add a "comment")')


def _shape_problem(given: set[str]) -> tuple[str, str | None]:
    """(why, the field to name as `param`) for `given` (the fields sent, comment aside) that is no kind of
    feedback: nothing sent, a kind's field missing, or fields of different kinds together (each field may be
    valid; the combination is not)."""
    if not given:
        return f"no feedback in the request: {_USAGE}", None
    needs = [[f for f in _order(fields) if f not in given] for fields in _SHAPES.values() if given < fields]
    if needs:  # param: the (first) field that would make it whole
        return (f"{' and '.join(sorted(given))} needs {' or '.join(' and '.join(n) for n in needs)}: {_USAGE}",
                needs[0][0])
    ours, theirs = _conflict(given)
    together = (f"{ours[0]} and {theirs[0]} cannot be sent together" if len(ours) == len(theirs) == 1 else
                f"{' and '.join(ours)} cannot be sent with {' and '.join(theirs)}")
    return f"{together} (one request is one kind of feedback): {_USAGE}", theirs[0]


def _order(fields: set[str]) -> list[str]:
    """A kind's fields in the order the request model declares them (completion_id before rating)."""
    return [f for f in FeedbackRequest.model_fields if f in fields]


def _conflict(given: set[str]) -> tuple[list[str], list[str]]:
    """The fields of the kind `given` is most like, and those of other kinds sent with them; a field that both
    kinds have (completion_id, of a rating and a correction) is in neither: it is not what conflicts."""
    best = max(_SHAPES.values(), key=lambda fields: len(fields & given))  # the first of equals: rating first
    theirs = given - best
    others = set().union(*(fields for fields in _SHAPES.values() if fields & theirs))
    ours = (given & best) - others or given & best
    return _order(ours), _order(theirs)


def feedback_router(keeper: Keeper, check_key: Callable, read_json: Callable[[Request], Awaitable[dict]],
                    parse: Callable, api_error: type) -> APIRouter:
    """The /v1/feedback routes. The app passes its own key check, body reader, parser and error type."""
    router = APIRouter(dependencies=[Depends(check_key)])

    def need_store():
        if not keeper.enabled:
            raise api_error(400, "this server keeps no log (it runs with --no-log), so it has no feedback to take "
                                 "or list", code="logging_disabled")

    async def post(request: Request):
        need_store()
        req = parse(FeedbackRequest, await read_json(request))
        given = {k for k, v in req.model_dump().items() if v is not None and k != "comment"}
        kind = next((k for k, fields in _SHAPES.items() if given == fields), None)
        if kind is None:
            message, param = _shape_problem(given)
            raise api_error(400, message, param=param, code="invalid_feedback")
        from chatforge.store import StoreError

        store = keeper.store
        try:
            if kind == "rating":
                record = await keeper.call(store.add_rating, req.completion_id, req.rating, comment=req.comment)
            elif kind == "correction":
                record = await keeper.call(store.add_correction, req.completion_id, req.correction,
                                           comment=req.comment)
            elif kind == "pair":
                record = await keeper.call(store.add_pair, req.chosen_id, req.rejected_id, comment=req.comment)
            else:
                record = await keeper.call(store.add_vote, req.battle_id, req.vote, comment=req.comment)
        except StoreError as e:
            status, code = {"not_found": (404, "not_found"), "mismatch": (400, "prompt_mismatch")}.get(
                e.kind, (400, "invalid_value"))
            raise api_error(status, e.message, param=e.param, code=code) from None
        return record

    # `after` at most SQLite's largest INTEGER (a larger one cannot even be compared in the query)
    async def listing(limit: int = Query(20, ge=1, le=100), after: int | None = Query(None, ge=0, le=2**63 - 1)):
        need_store()
        rows = await keeper.call(keeper.store.list_feedback, limit=limit + 1, after=after)
        page = rows[:limit]
        return {"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None, "has_more": len(rows) > limit}

    router.add_api_route("/v1/feedback", post, methods=["POST"])
    router.add_api_route("/v1/feedback", listing, methods=["GET"])
    return router
