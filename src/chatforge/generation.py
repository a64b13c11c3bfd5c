"""Moved to `chatforge.infer`; this name stays only so code written against the old path keeps importing
while branches merge. New code imports from chatforge.infer."""

from chatforge.infer import Completion, Engine, SamplingParams, Update  # noqa: F401
