"""Server checks before a run: reachable, the key accepted, the model served, what kind of server
it is (how it takes a grammar: the styles in agents/calls.py) and its own parser's verdict on every
grammar. (The API key and the chat calls themselves: agents/calls.py, one code path, `ChatOpenAI`
against any OpenAI-compatible /v1 server.)
"""

from __future__ import annotations

import re

import httpx

from agents.calls import LLAMA_CPP, VLLM, VLLM_GUIDED, api_key, request_fields
from core.errors import UserError


def check_server(base_url: str, model: str | None = None, timeout: float = 10.0) -> list[str]:
    """Fail early, in one line, when the server is unreachable, refuses the key, or lacks the
    model."""
    url = base_url.rstrip("/") + "/models"
    headers = {"Authorization": f"Bearer {api_key().get_secret_value()}"}
    try:
        response = httpx.get(url, headers=headers, timeout=timeout)
    except httpx.HTTPError as e:
        raise UserError(
            f"cannot reach the LLM server at {base_url} ({type(e).__name__}: {e or 'no answer'})"
        ) from None
    if response.status_code in (401, 403):
        raise UserError(
            f"the LLM server at {base_url} refused the API key (HTTP {response.status_code}); set "
            "OPENAI_API_KEY"
        )
    if response.status_code != 200:
        raise UserError(
            f"the LLM server at {base_url} answered HTTP {response.status_code} to GET /models; "
            "is it an OpenAI-compatible /v1 URL?"
        )
    try:
        served = [m["id"] for m in response.json().get("data", [])]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise UserError(
            f"{url} did not return an OpenAI model list; is it an OpenAI-compatible /v1 URL?"
        ) from None
    if model and served and model not in served:
        raise UserError(
            f"model {model!r} is not served at {base_url} (served: {', '.join(served[:5])})"
        )
    return served


def grammar_style(base_url: str, timeout: float = 5.0) -> str:
    """How the server at `base_url` takes a grammar (agents.calls styles), probed once per run:
    vLLM answers GET /version (the field depends on its version: the old `guided_*` fields are
    silently ignored from 0.12); llama.cpp servers own their models as "me" (llama-cpp-python) or
    "llamacpp" (llama-server). Anything else gets no grammar: never send a field a server may drop
    without saying so."""
    headers = {"Authorization": f"Bearer {api_key().get_secret_value()}"}
    root = base_url.rstrip("/").removesuffix("/v1")
    try:
        response = httpx.get(root + "/version", headers=headers, timeout=timeout)
        if response.status_code == 200 and isinstance(
            version := response.json().get("version"), str
        ):
            return vllm_style(version)
    except (httpx.HTTPError, ValueError, AttributeError):
        pass
    try:
        models = (
            httpx.get(base_url.rstrip("/") + "/models", headers=headers, timeout=timeout)
            .json()
            .get("data", [])
        )
        if models and all(m.get("owned_by") in ("me", "llamacpp") for m in models):
            return LLAMA_CPP
    except (httpx.HTTPError, ValueError, AttributeError, TypeError):
        pass
    return ""


def check_grammars(
    base_url: str, model: str, style: str, grammars: dict[str, str], timeout: float = 60.0
) -> None:
    """Send each grammar (name -> rendered text) once to the server that will use it, one token
    long: llama.cpp answers a grammar it cannot parse with HTTP 400 (and keeps serving), vLLM too.
    A refusal is one line naming the file, before any document is tried."""
    headers = {"Authorization": f"Bearer {api_key().get_secret_value()}"}
    for name, text in grammars.items():
        body = {
            "model": model,
            "messages": [{"role": "user", "content": "Say yes."}],
            "max_tokens": 1,
            **request_fields(style, text),
        }
        try:
            response = httpx.post(
                base_url.rstrip("/") + "/chat/completions",
                json=body,
                headers=headers,
                timeout=timeout,
            )
        except httpx.HTTPError as e:
            raise UserError(
                f"cannot reach the LLM server at {base_url} ({type(e).__name__})"
            ) from None
        if response.status_code == 400:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:200]
            raise UserError(
                f"{name}: the server at {base_url} refused the grammar "
                f"({' '.join(message.split())})"
            )


def vllm_style(version: str) -> str:
    """The field a vLLM of `version` reads; "" when it predates grammar support."""
    parts = [int(p) for p in re.findall(r"\d+", version)[:3]] + [0, 0, 0]
    major, minor, patch = parts[:3]
    if (major, minor, patch) >= (0, 10, 2):
        return VLLM
    if (major, minor) >= (0, 6):
        return VLLM_GUIDED
    return ""
