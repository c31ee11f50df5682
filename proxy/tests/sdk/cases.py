"""Drives the official OpenAI and Anthropic Python SDKs through sluice, for proxy/tests/sdk.rs.

Usage: python cases.py CASE. Env: SLUICE_BASE_URL (http://ADDR), SLUICE_KEY (a virtual key).
The SDKs are used as an application would use them: only base_url and api_key point at
sluice (plus max_retries=0 and a timeout, so a failure surfaces at once instead of being
retried away). Each case prints exactly one JSON line describing what the SDK parsed; the
Rust test compares it with what the mock produced and what sluice recorded. Any exception
escapes, so the process exits non-zero with the traceback on stderr.
"""

import json
import os
import signal
import sys

import anthropic
import openai

BASE = os.environ["SLUICE_BASE_URL"]
KEY = os.environ["SLUICE_KEY"]
TIMEOUT = 20.0
PROMPT = "one two three four"
MESSAGES = [{"role": "user", "content": PROMPT}]


def oai():
    return openai.OpenAI(base_url=BASE + "/v1", api_key=KEY, max_retries=0, timeout=TIMEOUT)


def ant():
    # The Anthropic SDK appends /v1/... itself.
    return anthropic.Anthropic(base_url=BASE, api_key=KEY, max_retries=0, timeout=TIMEOUT)


def openai_usage(u):
    return None if u is None else {"input": u.prompt_tokens, "output": u.completion_tokens}


def chat():
    r = oai().chat.completions.create(model="mock-gpt", messages=MESSAGES)
    return {
        "text": r.choices[0].message.content,
        "finish_reason": r.choices[0].finish_reason,
        "usage": openai_usage(r.usage),
    }


def chat_stream(include_usage):
    kwargs = {"stream_options": {"include_usage": True}} if include_usage else {}
    stream = oai().chat.completions.create(model="mock-gpt", messages=MESSAGES, stream=True, **kwargs)
    text, usage, chunks, usage_chunks, empty_choice_chunks, finish = "", None, 0, 0, 0, None
    for chunk in stream:
        chunks += 1
        if chunk.usage is not None:
            usage_chunks += 1
            usage = openai_usage(chunk.usage)
        if not chunk.choices:
            empty_choice_chunks += 1
        for c in chunk.choices:
            text += c.delta.content or ""
            finish = c.finish_reason or finish
    return {
        "text": text,
        "finish_reason": finish,
        "usage": usage,
        "chunks": chunks,
        "usage_chunks": usage_chunks,
        "empty_choice_chunks": empty_choice_chunks,
    }


def completions():
    r = oai().completions.create(model="mock-gpt", prompt=PROMPT)
    return {"text": r.choices[0].text, "usage": openai_usage(r.usage)}


def completions_stream():
    text, usage_chunks = "", 0
    for chunk in oai().completions.create(model="mock-gpt", prompt=PROMPT, stream=True):
        if chunk.usage is not None:
            usage_chunks += 1
        for c in chunk.choices:
            text += c.text or ""
    return {"text": text, "usage_chunks": usage_chunks}


def embeddings():
    # No encoding_format: the SDK asks for base64 and decodes the floats itself.
    r = oai().embeddings.create(model="mock-gpt", input=PROMPT)
    return {
        "embedding": r.data[0].embedding,
        "usage": {"input": r.usage.prompt_tokens, "total": r.usage.total_tokens},
    }


def responses_usage(u):
    return {"input": u.input_tokens, "output": u.output_tokens}


def responses():
    r = oai().responses.create(model="mock-gpt", input=PROMPT)
    return {"text": r.output_text, "status": r.status, "usage": responses_usage(r.usage)}


def responses_stream():
    events = []
    with oai().responses.stream(model="mock-gpt", input=PROMPT) as stream:
        for event in stream:
            events.append(event.type)
        final = stream.get_final_response()
    return {
        "text": final.output_text,
        "status": final.status,
        "usage": responses_usage(final.usage),
        "last_event": events[-1] if events else None,
    }


def models():
    return {"ids": [m.id for m in oai().models.list()]}


def anthropic_usage(u):
    return {"input": u.input_tokens, "output": u.output_tokens}


def anthropic_text(message):
    return "".join(b.text for b in message.content if b.type == "text")


def messages():
    m = ant().messages.create(model="mock-claude", max_tokens=100, messages=MESSAGES)
    return {"text": anthropic_text(m), "stop_reason": m.stop_reason, "usage": anthropic_usage(m.usage)}


def messages_stream():
    with ant().messages.stream(model="mock-claude", max_tokens=100, messages=MESSAGES) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    return {
        "text": anthropic_text(final),
        "streamed_text": streamed,
        "stop_reason": final.stop_reason,
        "usage": anthropic_usage(final.usage),
    }


def count_tokens():
    r = ant().messages.count_tokens(model="mock-claude", messages=MESSAGES)
    return {"input_tokens": r.input_tokens}


def anthropic_models():
    return {"ids": [m.id for m in ant().models.list()]}


def expect_error(call, cls):
    """Runs `call`, which must raise exactly the SDK's `cls`; reports status and class."""
    try:
        call()
    except cls as e:
        return {"raised": type(e).__name__, "status": e.status_code, "body": e.body}
    raise AssertionError(f"expected {cls.__name__}, the call succeeded")


def openai_errors():
    c = oai()
    return {
        "bad_key": expect_error(
            lambda: openai.OpenAI(
                base_url=BASE + "/v1", api_key="sk-wrong", max_retries=0, timeout=TIMEOUT
            ).chat.completions.create(model="mock-gpt", messages=MESSAGES),
            openai.AuthenticationError,
        ),
        "unknown_model": expect_error(
            lambda: c.chat.completions.create(model="no-such-model", messages=MESSAGES),
            openai.NotFoundError,
        ),
    }


def anthropic_errors():
    c = ant()
    return {
        "bad_key": expect_error(
            lambda: anthropic.Anthropic(
                base_url=BASE, api_key="sk-wrong", max_retries=0, timeout=TIMEOUT
            ).messages.create(model="mock-claude", max_tokens=100, messages=MESSAGES),
            anthropic.AuthenticationError,
        ),
        "unknown_model": expect_error(
            lambda: c.messages.create(model="no-such-model", max_tokens=100, messages=MESSAGES),
            anthropic.NotFoundError,
        ),
    }


RATE_HEADERS = (
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "anthropic-ratelimit-requests-limit",
    "anthropic-ratelimit-requests-remaining",
    "anthropic-ratelimit-requests-reset",
)


def rate_headers(raw):
    return {h: raw.headers.get(h) for h in RATE_HEADERS if raw.headers.get(h) is not None}


def openai_rate_limit():
    """One request per second: the second call at once is refused; with retries on, the SDK
    backs off by the retry headers and succeeds."""
    c = oai()
    raw = c.chat.completions.with_raw_response.create(model="mock-gpt", messages=MESSAGES)
    limited = expect_error(
        lambda: c.chat.completions.create(model="mock-gpt", messages=MESSAGES),
        openai.RateLimitError,
    )
    patient = openai.OpenAI(base_url=BASE + "/v1", api_key=KEY, max_retries=5, timeout=TIMEOUT)
    r = patient.chat.completions.create(model="mock-gpt", messages=MESSAGES)
    return {"headers": rate_headers(raw), "limited": limited, "retried_text": r.choices[0].message.content}


def anthropic_rate_limit():
    c = ant()
    raw = c.messages.with_raw_response.create(model="mock-claude", max_tokens=100, messages=MESSAGES)
    limited = expect_error(
        lambda: c.messages.create(model="mock-claude", max_tokens=100, messages=MESSAGES),
        anthropic.RateLimitError,
    )
    patient = anthropic.Anthropic(base_url=BASE, api_key=KEY, max_retries=5, timeout=TIMEOUT)
    m = patient.messages.create(model="mock-claude", max_tokens=100, messages=MESSAGES)
    return {"headers": rate_headers(raw), "limited": limited, "retried_text": anthropic_text(m)}


def refused_once():
    """One call admitted, the next refused: both SDKs' view of a spent limit (headers and error),
    without waiting for it to refill."""
    o = oai()
    a = ant()
    raw_o = o.chat.completions.with_raw_response.create(model="mock-gpt", messages=MESSAGES)
    raw_a = a.messages.with_raw_response.create(model="mock-claude", max_tokens=100, messages=MESSAGES)
    return {
        "openai_headers": rate_headers(raw_o),
        "anthropic_headers": rate_headers(raw_a),
        "openai": expect_error(
            lambda: o.chat.completions.create(model="mock-gpt", messages=MESSAGES),
            openai.RateLimitError,
        ),
        "anthropic": expect_error(
            lambda: a.messages.create(model="mock-claude", max_tokens=100, messages=MESSAGES),
            anthropic.RateLimitError,
        ),
    }


def over_budget():
    return {
        "openai": expect_error(
            lambda: oai().chat.completions.create(model="mock-gpt", messages=MESSAGES),
            openai.RateLimitError,
        ),
        "anthropic": expect_error(
            lambda: ant().messages.create(model="mock-claude", max_tokens=100, messages=MESSAGES),
            anthropic.RateLimitError,
        ),
    }


CASES = {
    "chat": chat,
    "chat_stream": lambda: chat_stream(False),
    "chat_stream_usage": lambda: chat_stream(True),
    "completions": completions,
    "completions_stream": completions_stream,
    "embeddings": embeddings,
    "responses": responses,
    "responses_stream": responses_stream,
    "models": models,
    "messages": messages,
    "messages_stream": messages_stream,
    "count_tokens": count_tokens,
    "anthropic_models": anthropic_models,
    "openai_errors": openai_errors,
    "anthropic_errors": anthropic_errors,
    "openai_rate_limit": openai_rate_limit,
    "anthropic_rate_limit": anthropic_rate_limit,
    "over_budget": over_budget,
    "refused_once": refused_once,
}

if __name__ == "__main__":
    # A hung SDK call must fail the test, not hang it: SIGALRM ends the process.
    signal.alarm(60)
    print(json.dumps(CASES[sys.argv[1]]()), flush=True)
